"""Every setting of the ingest API, read once from the environment (or ``.local/stack.env``)."""

from __future__ import annotations

import json

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.transactions import FeeSchedule


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(validation_alias="DATABASE_URL")
    kafka_bootstrap: str = Field(validation_alias="KAFKA_BOOTSTRAP")
    #: Ledger shards (comma-separated, shard 0 first): balances and transactions are read
    #: there; empty = one shard, DATABASE_URL.
    ledger_database_urls: str = Field(default="", validation_alias="LEDGER_DATABASE_URLS")
    shard_pool_size_max: int = Field(default=4, ge=1, le=100)
    #: JSON, e.g. {"WITHDRAWAL": {"basis_points": 0, "fixed": "1.00"}}; unlisted types are free.
    fee_schedule_json: str = Field(default="{}", validation_alias="FEE_SCHEDULE")
    db_pool_size_max: int = Field(default=10, ge=1, le=100)
    #: Autocommit connections for the hot path's single statements and background loops.
    quick_pool_size_max: int = Field(default=4, ge=1, le=100)
    publish_timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    producer_linger_ms: int = Field(default=5, ge=0, le=1000)
    #: Entries of each in-memory cache (API keys, wallet access per client and wallet).
    cache_entries_max: int = Field(default=100_000, ge=100)
    #: API keys and wallet access: how often each process reads ``api_key_revision`` and
    #: ``wallet_access_revision``, and how long a cached entry is trusted after the last
    #: read (at most 1 s: a revocation, a frozen wallet or a grant take effect within it).
    api_key_revision_poll_ms: int = Field(default=200, ge=10, le=1_000)
    api_key_trust_ms: int = Field(default=900, ge=0, le=1_000)
    #: A rotated key keeps working this long unless the rotation says otherwise (30 days max).
    key_rotation_grace_s: int = Field(default=86_400, ge=0, le=30 * 86_400)
    #: Rate limits, shared by every API process on the host through one mapped file
    #: (default: /dev/shm/walletpipe-ingest-<hash of DATABASE_URL>.buckets).
    rate_limit_file: str | None = Field(default=None, validation_alias="INGEST_RATE_LIMIT_FILE")
    #: Buckets in the file (clients, keys with their own limit, client addresses).
    rate_limit_clients_max: int = Field(default=16_384, ge=64, le=4_000_000)
    #: Key lookups in PostgreSQL a client address may cause when its keys fail
    #: (unknown, revoked, expired): a bucket per address, taken before the lookup.
    auth_failures_per_second: float = Field(default=1.0, gt=0, le=10_000)
    auth_failures_burst: int = Field(default=20, ge=1, le=100_000)
    password_scrypt_n: int = Field(default=2**14, ge=2**10)
    #: A request waits this long at most for a database connection, then answers 503.
    db_acquire_timeout_ms: int = Field(default=3_000, ge=100, le=60_000)
    #: A pool gives up one reconnection attempt after this long; the next request starts a
    #: new one at once, so a restarted PostgreSQL is used again within about this long.
    db_reconnect_timeout_ms: int = Field(default=5_000, ge=500, le=600_000)
    #: Requests recorded but unpublished for publish_timeout_ms + relay_grace_ms are
    #: published by the relay (ingest_api.relay), up to relay_batch_max a round.
    relay_interval_ms: int = Field(default=1_000, ge=50, le=60_000)
    relay_grace_ms: int = Field(default=5_000, ge=0, le=600_000)
    relay_batch_max: int = Field(default=1_000, ge=1, le=100_000)
    relay_retry_delay_max_ms: int = Field(default=10_000, ge=100, le=600_000)
    #: Requests of this process waiting for their outcome at once (``Prefer: wait``).
    outcome_waiters_max: int = Field(default=10_000, ge=0, le=1_000_000)
    #: Accepted requests recorded by one INSERT at most (ingest_api.recorder).
    record_batch_max: int = Field(default=1_000, ge=1, le=10_000)

    #: Webhook endpoints (docs/webhooks.md): public addresses only, unless the operator
    #: allows networks (comma-separated, e.g. "10.20.0.0/16") or loopback (tests); the
    #: notification service applies the same variables at every delivery.
    webhook_allow_loopback: bool = Field(default=False, validation_alias="WEBHOOK_ALLOW_LOOPBACK")
    webhook_allowed_networks: str = Field(default="", validation_alias="WEBHOOK_ALLOWED_NETWORKS")
    #: How long a subscription's endpoint may take to resolve before it is refused.
    webhook_resolve_timeout_ms: int = Field(default=3_000, ge=100, le=30_000)

    @field_validator("fee_schedule_json")
    @classmethod
    def _fee_schedule_parses(cls, value: str) -> str:
        FeeSchedule.parse(json.loads(value))
        return value

    @property
    def fee_schedule(self) -> FeeSchedule:
        return FeeSchedule.parse(json.loads(self.fee_schedule_json))

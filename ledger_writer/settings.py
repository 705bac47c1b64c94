"""Every setting of the ledger writer, read once from the environment (prefix ``LEDGER_``)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.shards import ShardConfigError, ShardMap, split_database_urls
from domain.topics import (
    GATEWAY_REQUESTS,
    GATEWAY_RESULTS,
    LEDGER_COMMANDS,
    LEDGER_EVENTS,
    LEDGER_SHARD_CREDITS,
    TRANSACTIONS_REJECTED,
    WALLET_COMMANDS,
)
from domain.transactions import TransactionType


class LedgerSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_prefix="LEDGER_")

    #: The directory: the API's database (users, wallets, requests). With one shard it is
    #: also the ledger's.
    database_url: str = Field(validation_alias="DATABASE_URL")
    kafka_bootstrap: str = Field(validation_alias="KAFKA_BOOTSTRAP")
    #: Sharding: one database URL per shard, comma-separated, shard 0 first (empty: one
    #: shard, DATABASE_URL); this process writes shard ``shard`` (LEDGER_SHARD).
    database_urls: str = Field(default="", validation_alias="LEDGER_DATABASE_URLS")
    shard: int = Field(default=0, ge=0, lt=16)
    #: With more than one shard each shard's writer is its own group: ``<group>-shard-<i>``.
    consumer_group: str = "ledger-writer"
    #: The topics are the contract's (domain/topics.py); tests point a writer at private ones.
    commands_topic: str = LEDGER_COMMANDS.name
    rejected_topic: str = TRANSACTIONS_REJECTED.name
    events_topic: str = LEDGER_EVENTS.name
    gateway_requests_topic: str = GATEWAY_REQUESTS.name
    gateway_results_topic: str = GATEWAY_RESULTS.name
    shard_credits_topic: str = LEDGER_SHARD_CREDITS.name
    #: The stream's input: each ledger event (and a posted credit) for the wallet it is about.
    wallet_commands_topic: str = WALLET_COMMANDS.name
    #: Held first and posted on the payment gateway's answer (the seed's async processor).
    two_phase_types: list[TransactionType] = [TransactionType.PAYMENT, TransactionType.WITHDRAWAL]
    #: A hold without a gateway answer by then is released (HOLD_EXPIRED).
    hold_timeout_ms: int = Field(default=30_000, ge=100, le=7 * 24 * 3600 * 1000)
    #: How often the loop looks for expired holds when no batch arrives.
    expiry_sweep_interval_ms: int = Field(default=200, ge=10, le=60_000)
    batch_size_max: int = Field(default=5_000, ge=1, le=100_000)
    flush_interval_ms: int = Field(default=20, ge=1, le=10_000)
    outbox_batch_max: int = Field(default=10_000, ge=1, le=100_000)
    publish_timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    #: How long a dead writer keeps its partitions (the broker allows 6 s at least).
    session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)
    report_interval_ms: int = Field(default=10_000, ge=100)
    #: Reconnection after PostgreSQL or Kafka failed: the first wait, doubled each attempt
    #: up to the longest; the writer gives up (exits) after this many attempts in a row.
    reconnect_backoff_ms: int = Field(default=100, ge=10, le=60_000)
    reconnect_backoff_max_ms: int = Field(default=5_000, ge=10, le=300_000)
    reconnect_attempts_max: int = Field(default=1_000, ge=1, le=1_000_000)
    #: How long a connection attempt to PostgreSQL may take.
    connect_timeout_s: int = Field(default=5, ge=1, le=300)
    #: How often a standby writer (another holds the shard's lock) asks for the lock.
    standby_poll_ms: int = Field(default=1_000, ge=10, le=60_000)

    @property
    def shard_urls(self) -> list[str]:
        return split_database_urls(self.database_urls) or [self.database_url]

    @property
    def shard_map(self) -> ShardMap:
        return ShardMap(len(self.shard_urls))

    @property
    def shard_database_url(self) -> str:
        """The database this writer posts to."""
        urls = self.shard_urls
        if self.shard >= len(urls):
            raise ShardConfigError(f"LEDGER_SHARD={self.shard} but only {len(urls)} shard(s)")
        return urls[self.shard]

    @property
    def group(self) -> str:
        if not self.shard_map.sharded:
            return self.consumer_group
        return f"{self.consumer_group}-shard-{self.shard}"

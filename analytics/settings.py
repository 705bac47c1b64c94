"""Every setting of the analytics service, read once from the environment."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SIGNING_KEY_FILE_NAME = "regulatory-signing.key"


class AnalyticsSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap: str = Field(validation_alias="KAFKA_BOOTSTRAP")
    #: The embedded engine (chdb:///abs/path) unless CLICKHOUSE_URL names a server.
    clickhouse_dsn: str = Field(validation_alias="CLICKHOUSE_DSN")
    clickhouse_url: str | None = Field(default=None, validation_alias="CLICKHOUSE_URL")
    #: Where api_clients lives: reporting keys are checked against it.
    database_url: str = Field(validation_alias="DATABASE_URL")
    analytics_url: str = Field(default="http://127.0.0.1:18090", validation_alias="ANALYTICS_URL")

    # The sink.
    consumer_group: str = "analytics-sink"
    #: Put before every topic name the service reads and writes (``ANALYTICS_TOPIC_PREFIX``),
    #: as ``STREAMS_TOPIC_PREFIX`` does for the stream: a second analytics service on private
    #: topics beside a running pipeline (tests, benchmarks) neither sees nor feeds it.
    topic_prefix: str = Field(
        default="",
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]*$",
        validation_alias="ANALYTICS_TOPIC_PREFIX",
    )
    #: Where a new consumer group starts: the whole history (a new warehouse is complete),
    #: or only what arrives from now on.
    consumer_offset_reset: Literal["earliest", "latest"] = "earliest"
    #: An insert costs 0.15-0.2 s of CPU whatever its size up to thousands of rows (a part
    #: in each of eleven tables: the events and ten roll-ups, merged later), so the sink's
    #: cost follows its flushes, not its rows, until a flush holds thousands: a busy sink
    #: writes big batches, and a quiet one flushes every ``flush_interval_ms``, which bounds
    #: how far reports lag (3 s: about 5 % of a core for the flushes alone, against 15-20 %
    #: at 1 s; at 30 transactions/s, 1.7 ms of CPU per transaction against 5-6).
    batch_rows_max: int = Field(default=50_000, ge=1, le=1_000_000)
    flush_interval_ms: int = Field(default=3_000, ge=10, le=60_000)

    # Reports: bounds on what one request may ask for.
    report_range_days_max: int = Field(default=366, ge=1)
    report_points_max: int = Field(default=10_000, ge=10, le=1_000_000)
    #: Requests one backtest may read (``/v1/reports/backtest/history``, the CLI).
    backtest_rows_max: int = Field(default=500_000, ge=1_000, le=10_000_000)
    #: Risk scores (0-100, as on the records) at or above this count as high risk (fraud
    #: rates, suspicious activity).
    high_risk_score: Decimal = Field(default=Decimal("90"), ge=0, le=100)
    #: Decline reason codes that mean "declined as fraud" in the fraud rate.
    fraud_reason_codes: tuple[str, ...] = ("FRAUD_DECLINED",)
    #: API keys: how often ``api_key_revision`` is read, and how long a cached key is
    #: trusted after the last read (at most 1 s: revocations take effect within it).
    api_key_revision_poll_ms: int = Field(default=200, ge=10, le=1_000)
    api_key_trust_ms: int = Field(default=900, ge=0, le=1_000)
    api_key_cache_entries_max: int = Field(default=1_024, ge=1, le=100_000)
    #: Rate limits of the reports (per client and key: their api_clients / api_keys
    #: limits), in a file shared by the processes of the host (default under /dev/shm).
    rate_limit_file: str | None = Field(default=None, validation_alias="ANALYTICS_RATE_LIMIT_FILE")
    rate_limit_slots: int = Field(default=4_096, ge=64, le=1_000_000)
    #: Key lookups a client address may cause when its keys fail (unknown, revoked).
    auth_failures_per_second: float = Field(default=1.0, gt=0, le=10_000)
    auth_failures_burst: int = Field(default=20, ge=1, le=100_000)

    # Regulatory detection (amounts in the transaction's own currency, never converted).
    ctr_threshold: Decimal = Decimal("10000")
    structuring_amount_min: Decimal = Decimal("8000")
    structuring_amount_max: Decimal = Decimal("10000")
    structuring_count_24h_min: int = Field(default=3, ge=2, le=1_000)
    structuring_count_7d_min: int = Field(default=5, ge=2, le=1_000)
    in_out_window_hours: int = Field(default=24, ge=1, le=168)
    in_out_amount_min: Decimal = Decimal("3000")
    in_out_ratio_min: Decimal = Field(default=Decimal("0.9"), gt=0, le=1)
    #: A business day is a calendar day in this zone (CTRs sum per user per business day).
    business_timezone: str = "UTC"
    #: A day's CTRs are streamed once the day is over plus this grace, for late events.
    ctr_grace_minutes: int = Field(default=10, ge=0, le=24 * 60)
    #: The streaming detector: how often, over how much history, how much per cycle.
    regulatory_interval_s: float = Field(default=10.0, ge=0.2, le=3_600)
    regulatory_lookback_days: int = Field(default=16, ge=15, le=60)
    regulatory_rows_max: int = Field(default=500_000, ge=1_000, le=10_000_000)
    regulatory_reports_per_cycle_max: int = Field(default=1_000, ge=1, le=100_000)
    regulatory_export_days_max: int = Field(default=92, ge=1, le=366)
    #: HMAC-SHA256 key of export manifests. Unset: a random key kept in the key file.
    regulatory_signing_key: SecretStr | None = Field(
        default=None, validation_alias="REGULATORY_SIGNING_KEY"
    )
    regulatory_signing_key_file: Path | None = Field(
        default=None, validation_alias="REGULATORY_SIGNING_KEY_FILE"
    )

    @property
    def clickhouse_target(self) -> str:
        return self.clickhouse_url or self.clickhouse_dsn

    @property
    def signing_key_file(self) -> Path | None:
        """The key file: as configured, else beside the embedded engine's directory."""
        if self.regulatory_signing_key_file is not None:
            return self.regulatory_signing_key_file
        if self.clickhouse_url is None and self.clickhouse_dsn.startswith("chdb://"):
            engine_dir = Path(self.clickhouse_dsn.removeprefix("chdb://"))
            return engine_dir.parent / SIGNING_KEY_FILE_NAME
        return None

"""Every setting of the analytics service, read once from the environment."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AnalyticsSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap: str = Field(validation_alias="KAFKA_BOOTSTRAP")
    #: The embedded engine (chdb:///abs/path) unless CLICKHOUSE_URL names a server.
    clickhouse_dsn: str = Field(validation_alias="CLICKHOUSE_DSN")
    clickhouse_url: str | None = Field(default=None, validation_alias="CLICKHOUSE_URL")
    analytics_url: str = Field(default="http://127.0.0.1:18090", validation_alias="ANALYTICS_URL")
    consumer_group: str = "analytics-sink"
    batch_rows_max: int = Field(default=10_000, ge=1, le=1_000_000)
    flush_interval_ms: int = Field(default=1_000, ge=10, le=60_000)
    report_range_days_max: int = Field(default=366, ge=1)

    @property
    def clickhouse_target(self) -> str:
        return self.clickhouse_url or self.clickhouse_dsn

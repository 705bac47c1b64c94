"""Every setting of the ledger writer, read once from the environment."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LedgerSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(validation_alias="DATABASE_URL")
    kafka_bootstrap: str = Field(validation_alias="KAFKA_BOOTSTRAP")
    consumer_group: str = "ledger-writer"
    batch_size_max: int = Field(default=5_000, ge=1, le=100_000)
    flush_interval_ms: int = Field(default=20, ge=1, le=10_000)
    outbox_batch_max: int = Field(default=10_000, ge=1, le=100_000)
    publish_timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    report_interval_ms: int = Field(default=10_000, ge=100)

"""Every setting of the stream processor, read once from the environment."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_prefix="STREAMS_")

    kafka_bootstrap: str = Field(validation_alias="KAFKA_BOOTSTRAP")
    app_id: str = "wallet-streams"
    #: rocksdb:// (RocksDB through rocksdict) in production; memory:// in unit tests.
    store: str = "rocksdb://"
    data_dir: Path = Path(".local/streams")
    processing_guarantee: str = "at_least_once"
    log_level: str = "warn"
    #: Bounds the in-memory buffer of each stream (records waiting for the agent).
    stream_buffer_maxsize: int = Field(default=4096, ge=1, le=1_000_000)

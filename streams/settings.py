"""Every setting of the stream processor, read once from the environment."""

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.limits import DefaultLimits

#: Unverified (PENDING) and REJECTED users get low limits; VERIFIED users only their own.
DEFAULT_LIMITS_JSON = """{
  "PENDING": [
    {"transaction_type": "WITHDRAWAL", "period_type": "DAILY", "max_amount": "2000.00",
     "max_count": 20},
    {"transaction_type": "TRANSFER", "period_type": "DAILY", "max_amount": "10000.00",
     "max_count": 200},
    {"transaction_type": "PAYMENT", "period_type": "DAILY", "max_amount": "10000.00",
     "max_count": 500},
    {"transaction_type": "WITHDRAWAL", "period_type": "MONTHLY", "max_amount": "20000.00",
     "max_count": 300}
  ],
  "REJECTED": [
    {"transaction_type": "WITHDRAWAL", "period_type": "DAILY", "max_amount": "0.00",
     "max_count": 0},
    {"transaction_type": "TRANSFER", "period_type": "DAILY", "max_amount": "0.00",
     "max_count": 0},
    {"transaction_type": "PAYMENT", "period_type": "DAILY", "max_amount": "0.00",
     "max_count": 0}
  ],
  "VERIFIED": []
}"""


class StreamSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_prefix="STREAMS_")

    kafka_bootstrap: str = Field(validation_alias="KAFKA_BOOTSTRAP")
    app_id: str = "wallet-streams"
    #: Put before every topic name the worker reads or writes: bench/streams and tests run a
    #: worker on private topics of a shared broker. Empty in production.
    topic_prefix: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9._-]*$")
    #: rocksdb:// (RocksDB through rocksdict) in production; memory:// in unit tests.
    store: str = "rocksdb://"
    data_dir: Path = Path(".local/streams")
    processing_guarantee: str = "at_least_once"
    log_level: str = "warn"
    #: Bounds the in-memory buffer of each stream (records waiting for the agent).
    stream_buffer_maxsize: int = Field(default=4096, ge=1, le=1_000_000)
    #: The producer's linger and batch size: outputs and changelogs leave in batches.
    producer_linger_ms: int = Field(default=5, ge=0, le=1_000)
    producer_batch_bytes_max: int = Field(default=1_000_000, ge=16_384, le=16_000_000)
    #: Default spending limits by the paying user's KYC status (JSON, see DEFAULT_LIMITS_JSON).
    default_limits_json: str = Field(
        default=DEFAULT_LIMITS_JSON, validation_alias="STREAMS_DEFAULT_LIMITS"
    )

    #: Fraud policy on the score in [0, 1]: review from here ...
    review_threshold: float = Field(default=0.6, ge=0, le=1)
    #: ... decline from here (at least the review threshold).
    decline_threshold: float = Field(default=0.85, ge=0, le=1)
    #: The analysts' policy (JSON: rules, thresholds 0-100, version; docs/models.md). Unset:
    #: the two thresholds above and no rules. Checked for changes every interval below.
    policy_file: Path | None = None
    policy_check_interval_s: float = Field(default=1.0, ge=0.1, le=60)
    #: A held review without an analyst's decision is declined after this long.
    review_timeout_s: int = Field(default=300, ge=1, le=7 * 86_400)
    #: The online scorer's random seed (HalfSpaceTrees), so a run can be repeated.
    scorer_seed: int = 42
    #: The model registry (``walletpipe models train`` writes it; WALLETPIPE_MODELS_DIR
    #: there): its champion decides, its challengers score in shadow. Unset, or without a
    #: champion: the online scorer decides. Checked for changes every interval below.
    models_dir: Path | None = None
    #: Which model of the registry (``--name`` of ``walletpipe models train``).
    model_name: str = Field(default="fraud", min_length=1, max_length=80, pattern=r"^[\w.-]+$")
    models_check_interval_s: float = Field(default=1.0, ge=0.1, le=60)
    #: Terminal fraud features count labels known this many days after a transaction; a
    #: model must have been trained with the same delay (``--delay-days``) to be loaded.
    label_delay_days: int = Field(default=7, ge=1, le=60)

    @field_validator("default_limits_json")
    @classmethod
    def _default_limits_parse(cls, value: str) -> str:
        DefaultLimits.from_json(value)
        return value

    @property
    def default_limits(self) -> DefaultLimits:
        return DefaultLimits.from_json(self.default_limits_json)

"""Every setting of the stream processor, read once from the environment."""

from pathlib import Path
from typing import Literal

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
    #: The consumer group (and the prefix of the changelog topics): workers of one group
    #: share the wallet partitions.
    app_id: str = "wallet-streams"
    #: Put before every topic name the worker reads or writes: bench/streams and tests run a
    #: worker on private topics of a shared broker. Empty in production.
    topic_prefix: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9._-]*$")
    #: The worker's local RocksDB state (one store per partition it owns); rebuilt from the
    #: changelog topics when missing. Each worker of a group needs its own.
    data_dir: Path = Path(".local/streams")
    #: "exactly-once" (Kafka transactions: outputs, state changes and offsets commit
    #: together) or "at-least-once" (benchmarks only: a crash can repeat outputs).
    processing_guarantee: Literal["exactly-once", "at-least-once"] = "exactly-once"
    #: How often a Kafka transaction commits: a decision is readable (read committed) after
    #: the commit that carries it, so this bounds the stage's latency; each commit costs a
    #: few broker round trips (bench/streams measures both).
    commit_interval_ms: int = Field(default=50, ge=5, le=10_000)
    #: A killed worker's open Kafka transaction blocks readers of its output partitions
    #: until it is aborted: by the worker's restart (same transactional id, fenced) or
    #: after this long.
    transaction_timeout_ms: int = Field(default=15_000, ge=1_000, le=900_000)
    #: A worker that is gone for good hands its partitions to another worker after this
    #: long. A restarted worker takes them back at once: it rejoins its group as the same
    #: static member (``group.instance.id``, stable per state folder, as its transactional id).
    session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)
    #: A worker stopping on an error (Kafka away past the transaction timeout, a fenced or
    #: fatal producer, a broken invariant) gives its clean-up this long, then exits anyway:
    #: the supervisor restarts it, and the successor fences whatever transaction is open.
    failure_exit_timeout_ms: int = Field(default=5_000, ge=500, le=120_000)
    #: At start, the worker waits this long for Kafka to answer with a leader for every
    #: partition of its input topic (Kafka restarting), checking every ``kafka_wait_poll_ms``,
    #: instead of failing at once and climbing the supervisor's backoff.
    kafka_wait_s: float = Field(default=180.0, ge=1, le=3_600)
    kafka_wait_poll_ms: int = Field(default=500, ge=50, le=10_000)
    log_level: str = "warn"
    #: The clock: every worker sends a tick to every partition this often.
    tick_interval_ms: int = Field(default=1_000, ge=50, le=60_000)
    #: The ledger must post or fail a command within this long of the decision
    #: (``PostTransaction.expires_at``); the stream releases the hold ``hold_grace_s`` later.
    command_timeout_s: int = Field(default=600, ge=1, le=7 * 86_400)
    hold_grace_s: int = Field(default=60, ge=0, le=86_400)
    #: How long a decided transaction (its replay protection, its features for the label)
    #: and an applied credit are kept after the outcome: labels come within the 7-day
    #: dispute window.
    decided_retention_s: int = Field(default=8 * 86_400, ge=1, le=90 * 86_400)
    #: A partition sends its terminal counts at most this long after taking the first.
    terminal_flush_ms: int = Field(default=1_000, ge=10, le=60_000)
    #: Default spending limits by the paying user's KYC status (JSON, see DEFAULT_LIMITS_JSON).
    default_limits_json: str = Field(
        default=DEFAULT_LIMITS_JSON, validation_alias="STREAMS_DEFAULT_LIMITS"
    )

    #: Fraud policy on the score in [0, 1]: review from here ...
    review_threshold: float = Field(default=0.6, ge=0, le=1)
    #: ... decline from here (at least the review threshold).
    decline_threshold: float = Field(default=0.85, ge=0, le=1)
    #: At most this share of recent requests held for review by the score (the analysts'
    #: capacity): a model without thresholds of its own reviews only its top share.
    review_budget: float = Field(default=0.02, ge=0, le=1)
    #: The analysts' policy (JSON: rules, thresholds 0-100, version; docs/models.md). Unset:
    #: the two thresholds above and no rules. Checked for changes every interval below.
    policy_file: Path | None = None
    policy_check_interval_s: float = Field(default=1.0, ge=0.1, le=60)
    #: A held review without an analyst's decision is declined after this long (by the
    #: API's timeout; the stream declines it itself ``hold_grace_s`` later if none came).
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

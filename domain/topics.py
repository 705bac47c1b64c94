"""Every Kafka topic of the pipeline, declared once.

Topics keyed by wallet share one partition count, so that a wallet's records of every kind
land in the same partition number (faust's tables need that co-partitioning) and one worker
handles a wallet in order. Each topic has a dead-letter companion, ``<name>.dlq``, that
receives records which cannot be decoded or processed, with the reason in the headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WALLET_PARTITIONS = 8


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    description: str
    #: Broker settings of the topic, e.g. ``{"cleanup.policy": "compact"}``.
    config: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def dead_letter(self) -> str:
        return f"{self.name}.dlq"


TRANSACTIONS_REQUESTED = TopicSpec(
    "transactions.requested",
    WALLET_PARTITIONS,
    "TransactionRequested from the API, keyed by the wallet whose money moves first.",
)
TRANSACTIONS_REJECTED = TopicSpec(
    "transactions.rejected",
    WALLET_PARTITIONS,
    "TransactionRejected by the stream (reason code), keyed like the request.",
)
LEDGER_COMMANDS = TopicSpec(
    "ledger.commands",
    WALLET_PARTITIONS,
    "PostTransaction: approved and reserved, for the ledger writer; keyed like the request.",
)
LEDGER_EVENTS = TopicSpec(
    "ledger.events",
    WALLET_PARTITIONS,
    "TransactionPosted / TransactionFailed from the ledger outbox; keyed like the request.",
)
GATEWAY_REQUESTS = TopicSpec(
    "gateway.requests",
    WALLET_PARTITIONS,
    "AuthorizePayment from the ledger outbox: a PAYMENT or WITHDRAWAL is held, the payment "
    "gateway must capture, decline or void it; keyed by the source wallet.",
)
GATEWAY_RESULTS = TopicSpec(
    "gateway.results",
    WALLET_PARTITIONS,
    "GatewayResponded (CAPTURED with the captured amount, DECLINED, VOIDED) for the ledger "
    "writer, which applies it in its batches; keyed by the source wallet.",
)
LEDGER_SHARD_CREDITS = TopicSpec(
    "ledger.shard-credits",
    WALLET_PARTITIONS,
    "CreditFromShard between ledger shards (only with more than one shard): the source "
    "shard's outbox tells the destination shard to credit a wallet from its clearing "
    "account; keyed by the credited wallet.",
)
WALLET_CREDITS = TopicSpec(
    "streams.wallet-credits",
    WALLET_PARTITIONS,
    "Internal: a posted credit re-keyed by the credited wallet, so its partition applies it.",
)
LIMITS_CHANGES = TopicSpec(
    "limits.changes",
    WALLET_PARTITIONS,
    "WalletLimitsChanged from the API: every limit of one wallet (its own and its user's), "
    "keyed by the wallet; compacted, so the latest set per wallet is kept for ever.",
    config={"cleanup.policy": "compact"},
)
REVIEWS_REQUESTED = TopicSpec(
    "reviews.requested",
    WALLET_PARTITIONS,
    "ReviewRequested by the stream: funds held until an analyst decides; keyed like the request.",
)
REVIEWS_DECISIONS = TopicSpec(
    "reviews.decisions",
    WALLET_PARTITIONS,
    "ReviewDecided from the API (an analyst, or the review timeout), keyed by the wallet.",
)
FRAUD_LABELS = TopicSpec(
    "fraud.labels",
    WALLET_PARTITIONS,
    "FraudLabelled: a transaction's ground truth (fraud or not, and the scenario), known days "
    "later; keyed like the transaction's request. The stream's online classifier learns from it.",
)
TERMINAL_ACTIVITY = TopicSpec(
    "streams.terminal-activity",
    WALLET_PARTITIONS,
    "TerminalActivity (internal): a transaction the stream approved or held at a terminal, "
    "or a fraud label for one; keyed by the terminal, so one agent counts each terminal.",
)
REGULATORY_REPORTS = TopicSpec(
    "regulatory.reports",
    3,
    "RegulatoryReport from the analytics detector (currency transaction reports, suspicious "
    "activity candidates with evidence), keyed by subject; report_id is stable, dedupe by it.",
)

TOPICS: tuple[TopicSpec, ...] = (
    TRANSACTIONS_REQUESTED,
    TRANSACTIONS_REJECTED,
    LEDGER_COMMANDS,
    LEDGER_EVENTS,
    GATEWAY_REQUESTS,
    GATEWAY_RESULTS,
    LEDGER_SHARD_CREDITS,
    WALLET_CREDITS,
    LIMITS_CHANGES,
    REVIEWS_REQUESTED,
    REVIEWS_DECISIONS,
    FRAUD_LABELS,
    TERMINAL_ACTIVITY,
    REGULATORY_REPORTS,
)

DEAD_LETTER_PARTITIONS = 1


def all_topic_names_with_partitions() -> dict[str, int]:
    """Every topic to create, dead-letter companions included."""
    names = {spec.name: spec.partitions for spec in TOPICS}
    names.update({spec.dead_letter: DEAD_LETTER_PARTITIONS for spec in TOPICS})
    return names


def topic_configs() -> dict[str, dict[str, str]]:
    """Broker settings of the topics that need any (compaction)."""
    return {spec.name: dict(spec.config) for spec in TOPICS if spec.config}


def dead_letter_headers(
    topic: str, partition: int, offset: int, reason: str
) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record: why it failed and where it came from."""
    return [
        ("dlq.reason", reason.encode()),
        ("dlq.topic", topic.encode()),
        ("dlq.partition", str(partition).encode()),
        ("dlq.offset", str(offset).encode()),
    ]

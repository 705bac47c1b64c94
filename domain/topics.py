"""Every Kafka topic of the pipeline, declared once.

Topics keyed by wallet share one partition count, so that a wallet's records of every kind
land in the same partition number and one worker handles a wallet in order. Everything that
changes a wallet's stream state reaches the stream on ONE topic, ``wallet.commands``, in the
order it was written (docs/topics.md: "One ordered input per wallet"). Each topic has a
dead-letter companion, ``<name>.dlq``, that receives records which cannot be decoded or
processed, with the reason in the headers.
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


WALLET_COMMANDS = TopicSpec(
    "wallet.commands",
    WALLET_PARTITIONS,
    "Everything that changes a wallet's stream state, typed by ``kind`` and keyed by the "
    "wallet: requests (ingest API), limit sets (API), review decisions (API), ledger outcomes "
    "and credits (ledger outbox), fraud labels (labeller), clock ticks (the stream worker).",
)
TRANSACTIONS_REQUESTED = TopicSpec(
    "transactions.requested",
    WALLET_PARTITIONS,
    "TransactionRequested: each request the stream took in, once, forwarded in the same Kafka "
    "transaction as its decision (analytics reads it); keyed by the wallet whose money moves "
    "first.",
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
REVIEWS_REQUESTED = TopicSpec(
    "reviews.requested",
    WALLET_PARTITIONS,
    "ReviewRequested by the stream: funds held until an analyst decides; keyed like the request.",
)
TERMINAL_COUNTS = TopicSpec(
    "streams.terminal-counts",
    WALLET_PARTITIONS,
    "TerminalCounted (internal): a batch of one wallet partition's transactions and known "
    "frauds at one terminal and day, keyed by the terminal; every stream worker reads all of "
    "it into memory for the terminal fraud features. Kept 40 days (the longest terminal "
    "window plus the label delay).",
    config={"retention.ms": str(40 * 86_400_000)},
)
REGULATORY_REPORTS = TopicSpec(
    "regulatory.reports",
    3,
    "RegulatoryReport from the analytics detector (currency transaction reports, suspicious "
    "activity candidates with evidence), keyed by subject; report_id is stable, dedupe by it.",
)

TOPICS: tuple[TopicSpec, ...] = (
    WALLET_COMMANDS,
    TRANSACTIONS_REQUESTED,
    TRANSACTIONS_REJECTED,
    LEDGER_COMMANDS,
    LEDGER_EVENTS,
    GATEWAY_REQUESTS,
    GATEWAY_RESULTS,
    LEDGER_SHARD_CREDITS,
    REVIEWS_REQUESTED,
    TERMINAL_COUNTS,
    REGULATORY_REPORTS,
)

DEAD_LETTER_PARTITIONS = 1


def all_topic_names_with_partitions() -> dict[str, int]:
    """Every topic to create, dead-letter companions included."""
    names = {spec.name: spec.partitions for spec in TOPICS}
    names.update({spec.dead_letter: DEAD_LETTER_PARTITIONS for spec in TOPICS})
    return names


def topic_configs() -> dict[str, dict[str, str]]:
    """Broker settings of the topics that need any (retention)."""
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

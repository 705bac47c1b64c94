"""The records on Kafka topics: one schema module, versioned, JSON on the wire.

Every record has ``kind`` (its name), ``schema_version`` and a unique ``event_id`` (consumers
dedupe replays by it). Amounts are decimal strings, times ISO-8601 UTC. Commands are named
imperatively (``PostTransaction``), events in the past tense (``TransactionPosted``).
Decoding never trusts the bytes: anything that does not fit raises ``RecordDecodeError``,
whose message goes with the record to the dead-letter topic.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)

from domain.exceptions import DomainError, RecordDecodeError
from domain.limits import LIMITS_PER_SCOPE_MAX, KycStatus, LimitPeriod, LimitScope
from domain.money import from_wire, wire
from domain.transactions import TransactionStatus, TransactionType

SCHEMA_VERSION = 1


def _strict_amount(value: object) -> Decimal:
    # Raised as ValueError so pydantic reports it and decoding fails as RecordDecodeError.
    if isinstance(value, Decimal):
        value = wire(value)
    if not isinstance(value, str):
        raise ValueError("amounts travel as decimal strings, never as JSON numbers")
    try:
        return from_wire(value)
    except DomainError as error:
        raise ValueError(error.message) from None


#: An exact amount: a decimal string on the wire, a ``Decimal`` in code.
Amount = Annotated[Decimal, BeforeValidator(_strict_amount), PlainSerializer(wire, return_type=str)]
MetadataValue = str | int | bool | None


def utc_now() -> datetime:
    return datetime.now(UTC)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)

    @property
    def partition_key(self) -> bytes:
        """The Kafka key this record is produced with; each kind that is produced names its
        own (a transaction's, a wallet's, a terminal's)."""
        raise NotImplementedError(f"{type(self).__name__} is not produced on its own")


class TransactionFacts(Record):
    """What a transaction is: carried by every record about it, so no consumer looks it up."""

    transaction_id: uuid.UUID
    transaction_type: TransactionType
    source_wallet_id: uuid.UUID | None = None
    destination_wallet_id: uuid.UUID | None = None
    source_user_id: uuid.UUID | None = None
    destination_user_id: uuid.UUID | None = None
    amount: Amount
    fee_amount: Amount
    total_amount: Amount
    currency_code: str = Field(min_length=3, max_length=3)
    description: str | None = Field(default=None, max_length=1000)
    client_id: uuid.UUID
    idempotency_key: str = Field(max_length=255)
    ip_address: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=500)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict, max_length=32)
    requested_at: datetime

    @property
    def partition_key(self) -> bytes:
        """The wallet whose money moves first: one wallet's records stay in order."""
        wallet = self.source_wallet_id or self.destination_wallet_id
        return str(wallet).encode()

    def facts(self) -> dict[str, Any]:
        """The shared fields, to build the next record of the same transaction."""
        values = self.__dict__
        return {name: values[name] for name in _FACT_FIELDS}


#: Computed once: pydantic's ``model_fields`` is slow to walk per record on the hot path.
_FACT_FIELDS: tuple[str, ...] = tuple(
    name for name in TransactionFacts.model_fields if name not in Record.model_fields
)


class TransactionRequested(TransactionFacts):
    """The API accepted a request (topic ``wallet.commands``; the stream forwards each one
    it takes in to ``transactions.requested``)."""

    kind: Literal["TransactionRequested"] = "TransactionRequested"
    #: KYC status (when the API accepted the request) of the user owning the wallet the
    #: record is keyed by; the stream applies that status's default spending limits.
    #: Absent on records from before it existed: then no default limit applies.
    kyc_status: KycStatus | None = None


#: A model's name and version as records carry it: "<registry name> v<N>", or the name of
#: the online scorer that stands in when the registry has no champion.
ModelName = Annotated[str, Field(min_length=1, max_length=100)]
#: A score as the records carry it: 0-100 with two decimals, like ``risk_score``.
RiskScore = Annotated[Decimal, Field(ge=0, le=100)]
SHADOW_SCORES_MAX = 8


class ScoredFacts(TransactionFacts):
    """The facts of a transaction the stream has scored and decided.

    ``risk_score`` (on each subclass) is the champion's score, the one that decided;
    ``scored_by`` names that model; ``shadow_scores`` are the challengers' scores of the
    same features, kept for comparison and never decisive. Records from before models
    were named have neither (None and {}).
    """

    scored_by: ModelName | None = None
    shadow_scores: dict[ModelName, RiskScore] = Field(
        default_factory=dict, max_length=SHADOW_SCORES_MAX
    )


class PostTransaction(ScoredFacts):
    """Command to the ledger: approved, funds reserved (topic ``ledger.commands``).

    ``expires_at``: the ledger must be done with the command by then. It fails a command it
    reads later (``COMMAND_EXPIRED``) and caps a two-phase hold's expiry at it, so once that
    time has passed the ledger never moves this transaction's money; the stream releases a
    reservation whose outcome has not come a grace period after it (docs/topics.md, "Holds
    expire"). None on commands from before it existed: no deadline.
    """

    kind: Literal["PostTransaction"] = "PostTransaction"
    risk_score: Decimal | None = None
    decided_at: datetime
    expires_at: datetime | None = None


class TransactionRejected(ScoredFacts):
    """The stream declined the request (topic ``transactions.rejected``); no money moved."""

    kind: Literal["TransactionRejected"] = "TransactionRejected"
    reason_code: str = Field(max_length=50)
    reason_message: str = Field(max_length=1000)
    risk_score: Decimal | None = None
    decided_at: datetime


class TransactionPosted(TransactionFacts):
    """The ledger committed the transaction (topic ``ledger.events``)."""

    kind: Literal["TransactionPosted"] = "TransactionPosted"
    transaction_status: TransactionStatus = TransactionStatus.COMPLETED
    risk_score: Decimal | None = None
    completed_at: datetime
    #: Two-phase (PAYMENT, WITHDRAWAL): what the gateway captured, at most ``amount``; the
    #: payer spent ``captured_amount + fee_amount`` and the rest of its hold is released.
    #: None for one-phase types: the whole ``amount`` moved.
    captured_amount: Amount | None = None

    @property
    def moved_amount(self) -> Decimal:
        return self.amount if self.captured_amount is None else self.captured_amount


class TransactionFailed(TransactionFacts):
    """The ledger refused the command (topic ``ledger.events``); it moved no money."""

    kind: Literal["TransactionFailed"] = "TransactionFailed"
    transaction_status: TransactionStatus = TransactionStatus.FAILED
    reason_code: str = Field(max_length=50)
    reason_message: str = Field(max_length=1000)
    failed_at: datetime


class DuplicateDiscarded(TransactionFacts):
    """The ledger had posted this transaction id already and discarded the repeat (topic
    ``ledger.events``): the stream releases whatever hold the repeat made. Status unchanged."""

    kind: Literal["DuplicateDiscarded"] = "DuplicateDiscarded"
    discarded_at: datetime


class AuthorizePayment(TransactionFacts):
    """Command to the payment gateway (topic ``gateway.requests``, from the ledger outbox):
    the ledger holds ``total_amount`` of the source wallet until the gateway answers with a
    ``GatewayResponded`` or the hold expires at ``hold_expires_at``."""

    kind: Literal["AuthorizePayment"] = "AuthorizePayment"
    hold_expires_at: datetime


class GatewayResponded(Record):
    """The gateway's answer (topic ``gateway.results``, keyed by ``wallet_id``, the source
    wallet): CAPTURED ``captured_amount`` (<= amount; the rest is released), DECLINED or
    VOIDED (the whole hold is released). An answer for a hold that is closed is ignored."""

    kind: Literal["GatewayResponded"] = "GatewayResponded"
    transaction_id: uuid.UUID
    wallet_id: uuid.UUID
    outcome: Literal["CAPTURED", "DECLINED", "VOIDED"]
    captured_amount: Amount | None = None
    reason_message: str | None = Field(default=None, max_length=1000)
    responded_at: datetime


class CreditFromShard(TransactionFacts):
    """Command from one ledger shard to another (topic ``ledger.shard-credits``, from the
    source shard's outbox, keyed by ``wallet_id``): the source shard has debited the payer
    and credited its clearing account for ``to_shard``; the destination shard debits its
    clearing account for ``from_shard`` and credits ``credit_amount`` to ``wallet_id``, then
    announces the ``TransactionPosted`` (with ``captured_amount`` for a two-phase payment)."""

    kind: Literal["CreditFromShard"] = "CreditFromShard"
    risk_score: Decimal | None = None
    decided_at: datetime
    from_shard: int = Field(ge=0, lt=16)
    to_shard: int = Field(ge=0, lt=16)
    wallet_id: uuid.UUID
    credit_amount: Amount
    captured_amount: Amount | None = None
    debited_at: datetime

    @property
    def partition_key(self) -> bytes:
        return str(self.wallet_id).encode()


class WalletCredited(Record):
    """A posted credit, addressed to the credited wallet (topic ``wallet.commands``, keyed by
    ``wallet_id``; written by the ledger outbox beside the payer's ``TransactionPosted``):
    the credited wallet's partition makes it spendable, once per ``transaction_id``."""

    kind: Literal["WalletCredited"] = "WalletCredited"
    wallet_id: uuid.UUID
    transaction_id: uuid.UUID
    amount: Amount
    currency_code: str = Field(min_length=3, max_length=3)

    @property
    def partition_key(self) -> bytes:
        return str(self.wallet_id).encode()


class ReviewRequested(ScoredFacts):
    """The stream held the funds and wants an analyst's decision (topic
    ``reviews.requested``, keyed like the request). Without one by ``review_deadline`` the
    transaction is declined."""

    kind: Literal["ReviewRequested"] = "ReviewRequested"
    risk_score: Decimal
    decided_at: datetime
    review_deadline: datetime


class ReviewDecided(Record):
    """An analyst's decision on a held transaction, or the timeout's DECLINE (topic
    ``wallet.commands``, keyed by ``wallet_id``, the wallet the request was keyed by)."""

    kind: Literal["ReviewDecided"] = "ReviewDecided"
    transaction_id: uuid.UUID
    wallet_id: uuid.UUID
    decision: Literal["APPROVE", "DECLINE"]
    decided_by: str = Field(min_length=1, max_length=100)
    note: str | None = Field(default=None, max_length=1000)
    decided_at: datetime


class LimitSpec(BaseModel):
    """One spending limit as the stream applies it (a row of ``transaction_limits``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit_id: uuid.UUID
    scope: LimitScope
    transaction_type: TransactionType
    period_type: LimitPeriod
    max_amount: Amount
    max_count: int = Field(ge=0, le=2**31 - 1)


class WalletLimitsChanged(Record):
    """Every limit that applies to one wallet now: its own and its user's (topic
    ``wallet.commands``, keyed by the wallet). The whole set travels each time, so
    the latest record per wallet is the truth; ``version`` only grows, so the stream keeps
    the newest set whatever order two API replicas published in."""

    kind: Literal["WalletLimitsChanged"] = "WalletLimitsChanged"
    wallet_id: uuid.UUID
    user_id: uuid.UUID
    version: int = Field(ge=0)
    limits: list[LimitSpec] = Field(default_factory=list, max_length=2 * LIMITS_PER_SCOPE_MAX)


class FraudLabelled(Record):
    """Ground truth for one transaction, known only later (topic ``wallet.commands``, keyed by
    ``wallet_id``: the wallet whose money moves first, i.e. the key of its request). A
    chargeback or a customer's report says fraud within days; an undisputed transaction is
    labelled legitimate once its dispute window has passed. ``scenario`` names the fraud
    pattern when known (e.g. ``card_testing``). The stream learns from it with the features
    it scored the transaction with; a label for a transaction it does not know is
    dead-lettered."""

    kind: Literal["FraudLabelled"] = "FraudLabelled"
    transaction_id: uuid.UUID
    wallet_id: uuid.UUID
    is_fraud: bool
    scenario: str | None = Field(default=None, max_length=50)
    labelled_at: datetime


class ClockTicked(Record):
    """The stream worker's clock (topic ``wallet.commands``, one per partition every second,
    produced to the partition by number): the partition releases holds past their deadline,
    forgets decided transactions past their retention, and sends its terminal counts."""

    kind: Literal["ClockTicked"] = "ClockTicked"
    partition: int = Field(ge=0, lt=10_000)
    ticked_at: datetime


class TerminalCounted(Record):
    """Internal to the stream (topic ``streams.terminal-counts``, keyed by ``terminal``): one
    wallet partition's batch of ``transactions`` the stream approved or held at the terminal
    on the UTC day of ``time_s``, and ``frauds`` among that day's transactions labelled fraud
    since the last batch. Every worker adds them to its copy of every terminal's day counts."""

    kind: Literal["TerminalCounted"] = "TerminalCounted"
    terminal: str = Field(min_length=1, max_length=200)
    time_s: int = Field(ge=0, lt=2**40)
    transactions: int = Field(ge=0, le=2**31 - 1)
    frauds: int = Field(ge=0, le=2**31 - 1)


LedgerCommand = PostTransaction | TransactionRejected
LedgerEvent = TransactionPosted | TransactionFailed | DuplicateDiscarded

_ledger_input: TypeAdapter[LedgerCommand] = TypeAdapter(
    Annotated[PostTransaction | TransactionRejected, Field(discriminator="kind")]
)
_ledger_event: TypeAdapter[LedgerEvent] = TypeAdapter(
    Annotated[LedgerEvent, Field(discriminator="kind")]
)


def encode(record: Record) -> bytes:
    return record.model_dump_json().encode()


def _decode(adapter_or_model: object, payload: bytes | None) -> object:
    if payload is None:
        raise RecordDecodeError("record has no value")
    try:
        if isinstance(adapter_or_model, TypeAdapter):
            return adapter_or_model.validate_json(payload)
        return adapter_or_model.model_validate_json(payload)  # type: ignore[attr-defined]
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        raise RecordDecodeError(f"{where}: {first['msg']}") from None


def decode_requested(payload: bytes | None) -> TransactionRequested:
    return _decode(TransactionRequested, payload)  # type: ignore[return-value]


def decode_ledger_input(payload: bytes | None) -> PostTransaction | TransactionRejected:
    """The ledger writer reads commands and rejections (it records FAILED transactions)."""
    return _decode(_ledger_input, payload)  # type: ignore[return-value]


def decode_ledger_event(payload: bytes | None) -> LedgerEvent:
    return _decode(_ledger_event, payload)  # type: ignore[return-value]


def decode_authorize_payment(payload: bytes | None) -> AuthorizePayment:
    return _decode(AuthorizePayment, payload)  # type: ignore[return-value]


def decode_gateway_responded(payload: bytes | None) -> GatewayResponded:
    return _decode(GatewayResponded, payload)  # type: ignore[return-value]


def decode_credit_from_shard(payload: bytes | None) -> CreditFromShard:
    return _decode(CreditFromShard, payload)  # type: ignore[return-value]


def decode_wallet_limits_changed(payload: bytes | None) -> WalletLimitsChanged:
    return _decode(WalletLimitsChanged, payload)  # type: ignore[return-value]


def decode_review_requested(payload: bytes | None) -> ReviewRequested:
    return _decode(ReviewRequested, payload)  # type: ignore[return-value]


def decode_review_decided(payload: bytes | None) -> ReviewDecided:
    return _decode(ReviewDecided, payload)  # type: ignore[return-value]


def decode_fraud_labelled(payload: bytes | None) -> FraudLabelled:
    return _decode(FraudLabelled, payload)  # type: ignore[return-value]


def decode_wallet_credited(payload: bytes | None) -> WalletCredited:
    return _decode(WalletCredited, payload)  # type: ignore[return-value]


def decode_terminal_counted(payload: bytes | None) -> TerminalCounted:
    return _decode(TerminalCounted, payload)  # type: ignore[return-value]


WalletCommand = (
    TransactionRequested
    | WalletLimitsChanged
    | ReviewDecided
    | FraudLabelled
    | TransactionPosted
    | TransactionFailed
    | DuplicateDiscarded
    | WalletCredited
    | ClockTicked
)
_wallet_command: TypeAdapter[WalletCommand] = TypeAdapter(
    Annotated[WalletCommand, Field(discriminator="kind")]
)


def decode_wallet_command(payload: bytes | None) -> WalletCommand:
    """Any record of ``wallet.commands`` (the stream's one input), by its ``kind``."""
    return _decode(_wallet_command, payload)  # type: ignore[return-value]


def wallet_commands_of(event: LedgerEvent) -> list[Record]:
    """What the ledger's outbox writes to ``wallet.commands`` for one of its ledger events:
    the event itself, addressed to the wallet its request was keyed by (the payer, or a
    deposit's destination), and for a posted transfer or payment to a wallet the credit,
    addressed to the credited wallet (whose partition makes it spendable)."""
    notices: list[Record] = [event]
    if (
        isinstance(event, TransactionPosted)
        and event.source_wallet_id is not None
        and event.destination_wallet_id is not None
    ):
        notices.append(
            WalletCredited(
                wallet_id=event.destination_wallet_id,
                transaction_id=event.transaction_id,
                amount=event.moved_amount,
                currency_code=event.currency_code,
            )
        )
    return notices


TransactionRecord = (
    TransactionRequested
    | TransactionRejected
    | PostTransaction
    | TransactionPosted
    | TransactionFailed
    | DuplicateDiscarded
)
_any_transaction_record: TypeAdapter[TransactionRecord] = TypeAdapter(
    Annotated[TransactionRecord, Field(discriminator="kind")]
)


def decode_transaction_record(payload: bytes | None) -> TransactionRecord:
    """Any record about a transaction, whatever its topic (analytics reads them all)."""
    return _decode(_any_transaction_record, payload)  # type: ignore[return-value]

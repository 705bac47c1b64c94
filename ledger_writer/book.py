"""The ledger's batch state and the moves every kind of transaction shares: pure, no I/O.

``BatchPlan`` is what one batch will write; ``move`` posts a transaction's entries (or
refuses with ``Refused``, changing nothing); the row builders make the transactions and
transaction_events rows. ``planning`` (one-phase, failures), ``two_phase`` (holds and
gateway answers) and ``reversal`` build on them.
"""

from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from domain.exceptions import LedgerInvariantError
from domain.fast_records import trusted
from domain.ids import next_row_id
from domain.records import (
    AuthorizePayment,
    CreditFromShard,
    GatewayResponded,
    LedgerEvent,
    PostTransaction,
    TransactionPosted,
    TransactionRejected,
)
from domain.shards import clearing_wallet_id
from domain.transactions import (
    EntryType,
    EventStatus,
    EventType,
    Posting,
    RejectReason,
    TransactionStatus,
    TransactionType,
    postings_for,
)
from ledger_writer.rows import Row

LedgerInput = PostTransaction | TransactionRejected | GatewayResponded | CreditFromShard

TransactionInput = PostTransaction | TransactionRejected


@dataclass(frozen=True)
class TwoPhase:
    """Which types are held first and posted on the gateway's answer, and for how long."""

    types: frozenset[TransactionType] = frozenset(
        {TransactionType.PAYMENT, TransactionType.WITHDRAWAL}
    )
    hold_timeout: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class Original:
    """What a reversal needs to know of the transaction it reverses."""

    transaction_type: TransactionType
    status: str
    source_wallet_id: uuid.UUID | None
    destination_wallet_id: uuid.UUID | None
    currency_code: str
    #: What moved to the payee: the amount, or the captured part of a two-phase payment.
    moved: Decimal
    reversed: Decimal = Decimal(0)


@dataclass(frozen=True)
class Hold:
    """An authorization: ``amount`` (the command's total) held on ``wallet_id``."""

    command: PostTransaction
    wallet_id: uuid.UUID
    amount: Decimal
    expires_at: datetime
    open: bool = True


class Account(NamedTuple):
    """A wallet's ledger state. System accounts carry a signed ``available`` and no checks.
    A wallet of another shard has ``remote_shard`` set: its status and currency are known
    (checked like any wallet's), its balance is that shard's, never written here.

    Immutable, and a named tuple rather than a frozen dataclass: every posting makes new
    ones, and a named tuple is several times cheaper to build."""

    wallet_id: uuid.UUID
    currency_code: str
    status: str
    is_system: bool
    available: Decimal
    reserved: Decimal = Decimal(0)
    remote_shard: int | None = None
    #: A customer balance row's version as loaded: the batch's update must find it so.
    version: int | None = None

    @property
    def posted(self) -> Decimal:
        return self.available + self.reserved


@dataclass
class BatchPlan:
    transactions: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    entries: list[Row] = field(default_factory=list)
    accounts: dict[uuid.UUID, Account] = field(default_factory=dict)
    #: The accounts as loaded, before this batch: the balance updates are checked against
    #: them (a customer's row version, a system account's balance), so a balance another
    #: writer changed meanwhile can never be overwritten.
    loaded: dict[uuid.UUID, Account] = field(default_factory=dict)
    changed: set[uuid.UUID] = field(default_factory=set)
    ledger_events: list[LedgerEvent] = field(default_factory=list)
    #: Two-phase: holds known to this batch (loaded or opened here), rows to write.
    holds: dict[uuid.UUID, Hold] = field(default_factory=dict)
    holds_opened: list[Row] = field(default_factory=list)
    holds_closed: list[Row] = field(default_factory=list)
    status_updates: list[Row] = field(default_factory=list)
    gateway_requests: list[AuthorizePayment] = field(default_factory=list)
    #: Reversals: the originals they name (loaded, then updated here), rows to write.
    originals: dict[uuid.UUID, Original] = field(default_factory=dict)
    reversals: list[Row] = field(default_factory=list)
    #: Inputs naming a wallet that does not exist: the schema's foreign keys forbid even a
    #: FAILED row, so they go to the dead-letter topic (transaction id → reason).
    dead_letters: dict[uuid.UUID, str] = field(default_factory=dict)
    #: Sharding: this writer's shard (its clearing accounts are named after it), the payee
    #: of each transaction moved to another shard's wallet (transaction id → (shard, wallet,
    #: amount)) until it is announced, and the commands to the other shards.
    shard: int = 0
    crossings: dict[uuid.UUID, tuple[int, uuid.UUID, Decimal]] = field(default_factory=dict)
    shard_credits: list[CreditFromShard] = field(default_factory=list)
    posted: int = 0
    failed: int = 0
    skipped_duplicates: int = 0
    held: int = 0
    ignored_results: int = 0


class Refused(Exception):
    def __init__(self, code: RejectReason | str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def checked_account(
    plan: BatchPlan, wallet_id: uuid.UUID, currency_code: str, *, active: bool = True
) -> Account:
    account = plan.accounts.get(wallet_id)
    if account is None:
        raise Refused(RejectReason.WALLET_NOT_FOUND, f"wallet {wallet_id} does not exist")
    if active and account.status != "ACTIVE":
        raise Refused(RejectReason.WALLET_NOT_ACTIVE, f"wallet {wallet_id} is {account.status}")
    if account.currency_code != currency_code:
        raise Refused(
            RejectReason.CURRENCY_MISMATCH,
            f"wallet {wallet_id} holds {account.currency_code}, not {currency_code}",
        )
    return account


#: TransactionPosted's fields in order, and which of them come from the command's facts.
_POSTED_FIELDS = tuple(TransactionPosted.model_fields)
_POSTED_FROM_COMMAND = frozenset(_POSTED_FIELDS) - {
    "schema_version",
    "event_id",
    "kind",
    "transaction_status",
    "risk_score",
    "completed_at",
    "captured_amount",
}

_POSTED_FACTS = tuple(name for name in _POSTED_FIELDS if name in _POSTED_FROM_COMMAND)
_posted_facts_of = operator.itemgetter(*_POSTED_FACTS)


def posted_event(
    command: PostTransaction, now: datetime, captured_amount: Decimal | None = None
) -> TransactionPosted:
    """The TransactionPosted of a validated command, built without validating it again (the
    hot path: one per posting). Its event id is a fresh row id: unique, and time-ordered."""
    values = {
        "schema_version": 1,
        "event_id": next_row_id(),
        **dict(zip(_POSTED_FACTS, _posted_facts_of(command.__dict__), strict=True)),
        "kind": "TransactionPosted",
        "transaction_status": TransactionStatus.COMPLETED,
        "risk_score": command.risk_score,
        "completed_at": now,
        "captured_amount": captured_amount,
    }
    # What model_construct would record as set: every field passed, not the defaults.
    fields_set = set(_POSTED_FROM_COMMAND)
    fields_set.update(("event_id", "risk_score", "completed_at", "captured_amount"))
    posted: TransactionPosted = trusted(TransactionPosted, values, fields_set)
    return posted


def next_id() -> uuid.UUID:
    """The id of a row this batch creates (an entry, an event): see ``domain.ids``."""
    return next_row_id()


def check_amounts(command: PostTransaction) -> None:
    if command.amount <= 0 or command.fee_amount < 0:
        raise Refused(RejectReason.INVALID_TRANSACTION, "amount must be > 0 and fee >= 0")
    if command.total_amount != command.amount + command.fee_amount:
        raise Refused(RejectReason.INVALID_TRANSACTION, "total_amount is not amount + fee")


def move(plan: BatchPlan, command: PostTransaction, amount: Decimal, now: datetime) -> None:
    """Post ``amount`` (+ the fee) of ``command``: entries and balances, or ``Refused`` with
    nothing changed. A payee on another shard is checked here, and credited through this
    shard's clearing account for that shard (``announce`` sends the rest of the way)."""
    postings = postings_for(
        command.transaction_type,
        command.source_wallet_id,
        command.destination_wallet_id,
        amount,
        command.fee_amount,
        command.currency_code,
    )
    crossing = None
    routed = []
    for posting in postings:
        account = plan.accounts.get(posting.wallet_id)
        if account is not None and account.remote_shard is not None:
            checked_account(plan, posting.wallet_id, command.currency_code)
            if posting.entry_type is not EntryType.CREDIT:
                raise LedgerInvariantError(
                    f"transaction {command.transaction_id}: the payer {posting.wallet_id} "
                    f"belongs to shard {account.remote_shard}, not to shard {plan.shard}"
                )
            crossing = (account.remote_shard, posting.wallet_id, posting.amount)
            clearing = clearing_wallet_id(plan.shard, account.remote_shard, command.currency_code)
            posting = Posting(clearing, EntryType.CREDIT, posting.amount)
        routed.append(posting)
    apply_postings(plan, command.transaction_id, routed, command.currency_code, now)
    if crossing is not None:
        plan.crossings[command.transaction_id] = crossing


def apply_postings(
    plan: BatchPlan,
    transaction_id: uuid.UUID,
    postings: list[Posting],
    currency_code: str,
    now: datetime,
    *,
    active: bool = True,
) -> None:
    """Entries and balances of balanced ``postings`` on this shard's accounts, or
    ``Refused`` with nothing changed; ``active=False`` skips the wallet status check."""
    total = Decimal(0)
    for posting in postings:
        total += posting.signed
    if total != 0:
        raise LedgerInvariantError(f"transaction {transaction_id}: entries do not sum to zero")
    # Every wallet must exist, be active and hold the currency before any balance is judged.
    updated = {
        p.wallet_id: checked_account(plan, p.wallet_id, currency_code, active=active)
        for p in postings
    }
    entries = []
    for wallet_id, entry_type, amount in postings:
        account = updated[wallet_id]
        if account.remote_shard is not None:
            raise LedgerInvariantError(
                f"transaction {transaction_id}: wallet {wallet_id} belongs to shard "
                f"{account.remote_shard}; shard {plan.shard} cannot post to it"
            )
        if entry_type is EntryType.CREDIT:
            available, entry_text = account.available + amount, "CREDIT"
        else:
            available, entry_text = account.available - amount, "DEBIT"
        if available < 0 and not account.is_system:
            raise Refused(
                RejectReason.INSUFFICIENT_FUNDS,
                f"wallet {wallet_id} lacks {-available} {currency_code}",
            )
        updated[wallet_id] = Account(
            account.wallet_id,
            account.currency_code,
            account.status,
            account.is_system,
            available,
            account.reserved,
            account.remote_shard,
            account.version,
        )
        # balance_after: the wallet's posted balance (available + reserved) after this entry.
        entries.append(
            (
                next_id(),
                transaction_id,
                wallet_id,
                entry_text,
                amount,
                available + account.reserved,
                now,
            )
        )
    # Every check passed: now, and only now, the batch state changes.
    plan.entries.extend(entries)
    plan.accounts.update(updated)
    plan.changed.update(updated)


def announce(
    plan: BatchPlan, command: PostTransaction, now: datetime, captured: Decimal | None = None
) -> None:
    """After a move: the TransactionPosted, or, when the payee is on another shard, the
    CreditFromShard that shard posts and announces (the transaction completes there)."""
    crossing = plan.crossings.pop(command.transaction_id, None)
    if crossing is None:
        plan.ledger_events.append(posted_event(command, now, captured_amount=captured))
        return
    peer, wallet_id, amount = crossing
    plan.shard_credits.append(
        CreditFromShard(
            **command.facts(),
            risk_score=command.risk_score,
            decided_at=command.decided_at,
            from_shard=plan.shard,
            to_shard=peer,
            wallet_id=wallet_id,
            credit_amount=amount,
            captured_amount=captured,
            debited_at=now,
        )
    )


def transaction_row(
    item: TransactionInput,
    status: TransactionStatus,
    risk_score: Decimal | None,
    now: datetime,
    completed_at: datetime | None,
) -> Row:
    return (
        item.transaction_id,
        item.transaction_type.value,
        status.value,
        item.source_wallet_id,
        item.destination_wallet_id,
        item.metadata.get("external_reference_id"),
        item.amount,
        item.currency_code,
        item.fee_amount,
        item.total_amount,
        item.description,
        item.metadata,
        item.requested_at,
        now,
        completed_at,
        item.idempotency_key,
        item.ip_address,
        item.user_agent,
        risk_score,
    )


def event_row(
    item: TransactionInput,
    event_type: EventType,
    status: EventStatus,
    at: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
    data: dict[str, str] | None = None,
) -> Row:
    return (
        next_id(),
        item.transaction_id,
        event_type.value,
        status.value,
        {"client_id": str(item.client_id), **(data or {})},
        error_code,
        error_message,
        at,
    )

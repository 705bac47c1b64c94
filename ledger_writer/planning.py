"""Turn a batch of ledger inputs into the rows to write: pure, no I/O.

The writer owns its wallets' balances (one writer per shard), so it can apply a whole batch
in memory, in offset order, checking every invariant before anything is written: entries
sum to zero, no customer balance goes below zero, a transaction id posts once. A command
that breaks a business rule becomes a FAILED transaction with a reason; nothing else moves.
"""

from __future__ import annotations

import itertools
import secrets
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from domain.exceptions import LedgerInvariantError
from domain.records import (
    AuthorizePayment,
    DuplicateDiscarded,
    GatewayResponded,
    LedgerEvent,
    PostTransaction,
    TransactionFailed,
    TransactionPosted,
    TransactionRejected,
)
from domain.reversals import ReversalReason, mirror, reversal_of
from domain.transactions import (
    EntryType,
    EventStatus,
    EventType,
    RejectReason,
    TransactionStatus,
    TransactionType,
    postings_for,
)

LedgerInput = PostTransaction | TransactionRejected | GatewayResponded
TransactionInput = PostTransaction | TransactionRejected

#: Reason codes of a two-phase transaction that did not complete.
GATEWAY_DECLINED = "GATEWAY_DECLINED"
VOIDED = "VOIDED"
HOLD_EXPIRED = "HOLD_EXPIRED"


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


@dataclass(frozen=True)
class Account:
    """A wallet's ledger state. System accounts carry a signed ``available`` and no checks."""

    wallet_id: uuid.UUID
    currency_code: str
    status: str
    is_system: bool
    available: Decimal
    reserved: Decimal = Decimal(0)

    @property
    def posted(self) -> Decimal:
        return self.available + self.reserved


@dataclass
class BatchPlan:
    transactions: list[tuple] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)
    entries: list[tuple] = field(default_factory=list)
    accounts: dict[uuid.UUID, Account] = field(default_factory=dict)
    changed: set[uuid.UUID] = field(default_factory=set)
    ledger_events: list[LedgerEvent] = field(default_factory=list)
    #: Two-phase: holds known to this batch (loaded or opened here), rows to write.
    holds: dict[uuid.UUID, Hold] = field(default_factory=dict)
    holds_opened: list[tuple] = field(default_factory=list)
    holds_closed: list[tuple] = field(default_factory=list)
    status_updates: list[tuple] = field(default_factory=list)
    gateway_requests: list[AuthorizePayment] = field(default_factory=list)
    #: Reversals: the originals they name (loaded, then updated here), rows to write.
    originals: dict[uuid.UUID, Original] = field(default_factory=dict)
    reversals: list[tuple] = field(default_factory=list)
    #: Inputs naming a wallet that does not exist: the schema's foreign keys forbid even a
    #: FAILED row, so they go to the dead-letter topic (transaction id → reason).
    dead_letters: dict[uuid.UUID, str] = field(default_factory=dict)
    posted: int = 0
    failed: int = 0
    skipped_duplicates: int = 0
    held: int = 0
    ignored_results: int = 0


class _Refused(Exception):
    def __init__(self, code: RejectReason, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def wallets_of(inputs: Iterable[LedgerInput | PostTransaction]) -> set[uuid.UUID]:
    wallets = set()
    for item in inputs:
        if isinstance(item, GatewayResponded):
            wallets.add(item.wallet_id)
            continue
        wallets.update(w for w in (item.source_wallet_id, item.destination_wallet_id) if w)
    return wallets


def plan_batch(
    inputs: list[LedgerInput],
    already_posted: set[uuid.UUID],
    accounts: dict[uuid.UUID, Account],
    now: datetime,
    *,
    two_phase: TwoPhase | None = None,
    holds: dict[uuid.UUID, Hold] | None = None,
    expired: Iterable[uuid.UUID] = (),
    originals: dict[uuid.UUID, Original] | None = None,
) -> BatchPlan:
    """Plan one batch in input order. ``holds`` are the stored holds the batch's gateway
    results and ``expired`` name (the writer loads them); without ``two_phase`` every type
    posts at once."""
    plan = BatchPlan(
        accounts=dict(accounts), holds=dict(holds or {}), originals=dict(originals or {})
    )
    seen = set(already_posted)
    for item in inputs:
        if isinstance(item, GatewayResponded):
            _apply_gateway(plan, item, now)
            continue
        if item.transaction_id in seen:
            plan.skipped_duplicates += 1
            if isinstance(item, PostTransaction):  # the stream may hold funds for the repeat
                plan.ledger_events.append(DuplicateDiscarded(**item.facts(), discarded_at=now))
            continue
        seen.add(item.transaction_id)
        if isinstance(item, TransactionRejected):
            _record_failure(
                plan, item, item.reason_code, item.reason_message, now, authorized=False
            )
            continue
        try:
            original_id = reversal_of(item.metadata)
            if original_id is not None:
                _reverse(plan, item, original_id, now)
            elif two_phase is not None and item.transaction_type in two_phase.types:
                _hold(plan, item, now, now + two_phase.hold_timeout)
            else:
                _post(plan, item, now)
        except _Refused as refused:
            _record_failure(plan, item, refused.code, refused.message, now, authorized=True)
    for transaction_id in expired:
        hold = plan.holds.get(transaction_id)
        if hold is not None and hold.open:
            message = f"no gateway answer by {hold.expires_at.isoformat()}"
            _release(plan, hold, "EXPIRED", HOLD_EXPIRED, message, now)
    return plan


def _account(plan: BatchPlan, wallet_id: uuid.UUID, currency_code: str) -> Account:
    account = plan.accounts.get(wallet_id)
    if account is None:
        raise _Refused(RejectReason.WALLET_NOT_FOUND, f"wallet {wallet_id} does not exist")
    if account.status != "ACTIVE":
        raise _Refused(RejectReason.WALLET_NOT_ACTIVE, f"wallet {wallet_id} is {account.status}")
    if account.currency_code != currency_code:
        raise _Refused(
            RejectReason.CURRENCY_MISMATCH,
            f"wallet {wallet_id} holds {account.currency_code}, not {currency_code}",
        )
    return account


_FACT_NAMES = frozenset(PostTransaction.model_fields) - {
    "kind",
    "event_id",
    "schema_version",
    "risk_score",
    "decided_at",
}


def _posted(command: PostTransaction, now: datetime, **extra: object) -> TransactionPosted:
    """The TransactionPosted of a validated command, built without validating it again (the
    hot path: one per posting)."""
    facts = {k: v for k, v in command.__dict__.items() if k in _FACT_NAMES}
    return TransactionPosted.model_construct(
        **facts,
        event_id=uuid.uuid4(),
        risk_score=command.risk_score,
        completed_at=now,
        **extra,
    )


def _row_ids() -> Iterator[uuid.UUID]:
    """Ids of the rows a batch creates (entries, events): UUIDv7-shaped, a millisecond clock
    then random bits then a counter, so each batch appends to the primary-key indexes
    instead of touching random pages, and no id costs a call to the OS's random source."""
    millis = time.time_ns() // 1_000_000
    base = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | secrets.randbits(12) << 64
    base |= 0b10 << 62 | secrets.randbits(38) << 24
    return (uuid.UUID(int=base | n) for n in itertools.count())


_ids = _row_ids()


def _next_id() -> uuid.UUID:
    global _ids
    new = next(_ids)
    if new.int & 0xFFFFFF == 0xFFFFFF:  # 16 M ids from one base: start a fresh one
        _ids = _row_ids()
    return new


def _check_amounts(command: PostTransaction) -> None:
    if command.amount <= 0 or command.fee_amount < 0:
        raise _Refused(RejectReason.INVALID_TRANSACTION, "amount must be > 0 and fee >= 0")
    if command.total_amount != command.amount + command.fee_amount:
        raise _Refused(RejectReason.INVALID_TRANSACTION, "total_amount is not amount + fee")


def _move(plan: BatchPlan, command: PostTransaction, amount: Decimal, now: datetime) -> None:
    """Post ``amount`` (+ the fee) of ``command``: entries and balances, or ``_Refused`` with
    nothing changed."""
    postings = postings_for(
        command.transaction_type,
        command.source_wallet_id,
        command.destination_wallet_id,
        amount,
        command.fee_amount,
        command.currency_code,
    )
    if sum(p.signed for p in postings) != 0:
        raise LedgerInvariantError(
            f"transaction {command.transaction_id}: entries do not sum to zero"
        )
    # Every wallet must exist, be active and hold the currency before any balance is judged.
    updated = {p.wallet_id: _account(plan, p.wallet_id, command.currency_code) for p in postings}
    for posting in postings:
        account = updated[posting.wallet_id]
        account = replace(account, available=account.available + posting.signed)
        if not account.is_system and account.available < 0:
            raise _Refused(
                RejectReason.INSUFFICIENT_FUNDS,
                f"wallet {posting.wallet_id} lacks {-account.available} {command.currency_code}",
            )
        updated[posting.wallet_id] = account
    # Every check passed: now, and only now, the batch state changes.
    running: dict[uuid.UUID, Account] = {}
    for posting in postings:
        before = running.get(posting.wallet_id) or plan.accounts[posting.wallet_id]
        after = replace(before, available=before.available + posting.signed)
        running[posting.wallet_id] = after
        plan.entries.append(
            (
                _next_id(),
                command.transaction_id,
                posting.wallet_id,
                posting.entry_type.value,
                posting.amount,
                after.posted,
                now,
            )
        )
    plan.accounts.update(updated)
    plan.changed.update(updated)


def _post(plan: BatchPlan, command: PostTransaction, now: datetime) -> None:
    _check_amounts(command)
    _move(plan, command, command.amount, now)
    plan.transactions.append(
        _transaction_row(
            command, TransactionStatus.COMPLETED, command.risk_score, now, completed_at=now
        )
    )
    plan.events.extend(
        [
            _event(command, EventType.INITIATED, EventStatus.SUCCESS, command.requested_at),
            _event(command, EventType.AUTHORIZED, EventStatus.SUCCESS, command.decided_at),
            _event(command, EventType.SETTLED, EventStatus.SUCCESS, now),
        ]
    )
    plan.ledger_events.append(_posted(command, now))
    plan.posted += 1


def _reverse(
    plan: BatchPlan, command: PostTransaction, original_id: uuid.UUID, now: datetime
) -> None:
    """A (partial) reversal: checked against its original, posted at once (never held at
    the gateway: the money comes back), and recorded against the original."""
    _check_amounts(command)
    original = plan.originals.get(original_id)
    if original is None or original.status != TransactionStatus.COMPLETED.value:
        state = "does not exist" if original is None else f"is {original.status}"
        raise _Refused(ReversalReason.NOT_REVERSIBLE, f"transaction {original_id} {state}")
    expected = mirror(
        original.transaction_type, original.source_wallet_id, original.destination_wallet_id
    )
    actual = (command.transaction_type, command.source_wallet_id, command.destination_wallet_id)
    if actual != expected or command.currency_code != original.currency_code:
        raise _Refused(ReversalReason.MISMATCH, f"not the mirror of transaction {original_id}")
    if command.fee_amount != 0:
        raise _Refused(ReversalReason.MISMATCH, "a reversal carries no fee")
    remaining = original.moved - original.reversed
    if command.amount > remaining:
        raise _Refused(
            ReversalReason.EXCEEDS_ORIGINAL,
            f"only {remaining} {command.currency_code} of {original_id} is left to reverse",
        )
    _move(plan, command, command.amount, now)
    reversed_total = original.reversed + command.amount
    plan.originals[original_id] = replace(original, reversed=reversed_total)
    if reversed_total == original.moved:
        plan.originals[original_id] = replace(
            plan.originals[original_id], status=TransactionStatus.REVERSED.value
        )
        plan.status_updates.append((original_id, TransactionStatus.REVERSED.value, None))
    plan.reversals.append((command.transaction_id, original_id, command.amount, now))
    plan.transactions.append(
        _transaction_row(
            command, TransactionStatus.COMPLETED, command.risk_score, now, completed_at=now
        )
    )
    link = {"reversal_of": str(original_id)}
    plan.events.extend(
        [
            _event(command, EventType.INITIATED, EventStatus.SUCCESS, command.requested_at),
            _event(command, EventType.AUTHORIZED, EventStatus.SUCCESS, command.decided_at),
            _event(command, EventType.SETTLED, EventStatus.SUCCESS, now, data=link),
            # The original's own timeline shows each part reversed.
            (
                _next_id(),
                original_id,
                EventType.REVERSED.value,
                EventStatus.SUCCESS.value,
                {
                    "reversal_id": str(command.transaction_id),
                    "amount": str(command.amount),
                    "reversed_total": str(reversed_total),
                },
                None,
                None,
                now,
            ),
        ]
    )
    plan.ledger_events.append(_posted(command, now))
    plan.posted += 1


def _hold(plan: BatchPlan, command: PostTransaction, now: datetime, expires_at: datetime) -> None:
    """First phase: every wallet checked as for a posting, the payer's total held."""
    _check_amounts(command)
    postings = postings_for(
        command.transaction_type,
        command.source_wallet_id,
        command.destination_wallet_id,
        command.amount,
        command.fee_amount,
        command.currency_code,
    )
    for posting in postings:
        _account(plan, posting.wallet_id, command.currency_code)
    payer_id = command.source_wallet_id
    if payer_id is None:
        raise _Refused(RejectReason.INVALID_TRANSACTION, "a held transaction needs a source")
    payer = plan.accounts[payer_id]
    if payer.is_system or payer.available < command.total_amount:
        raise _Refused(
            RejectReason.INSUFFICIENT_FUNDS,
            f"wallet {payer_id} lacks {command.total_amount - payer.available} "
            f"{command.currency_code}",
        )
    plan.accounts[payer_id] = replace(
        payer,
        available=payer.available - command.total_amount,
        reserved=payer.reserved + command.total_amount,
    )
    plan.changed.add(payer_id)
    plan.transactions.append(
        _transaction_row(command, TransactionStatus.PENDING, command.risk_score, now, None)
    )
    plan.events.extend(
        [
            _event(command, EventType.INITIATED, EventStatus.SUCCESS, command.requested_at),
            _event(
                command,
                EventType.AUTHORIZED,
                EventStatus.PENDING,
                command.decided_at,
                data={"held": str(command.total_amount), "expires_at": expires_at.isoformat()},
            ),
        ]
    )
    hold = Hold(command, payer_id, command.total_amount, expires_at)
    plan.holds[command.transaction_id] = hold
    plan.holds_opened.append(
        (
            command.transaction_id,
            payer_id,
            command.total_amount,
            command.currency_code,
            command.model_dump_json().encode(),
            expires_at,
            now,
        )
    )
    plan.gateway_requests.append(AuthorizePayment(**command.facts(), hold_expires_at=expires_at))
    plan.held += 1


def _apply_gateway(plan: BatchPlan, result: GatewayResponded, now: datetime) -> None:
    hold = plan.holds.get(result.transaction_id)
    if hold is None or not hold.open:  # a repeat, or an answer after the expiry
        plan.ignored_results += 1
        return
    if result.wallet_id != hold.wallet_id:
        plan.dead_letters[result.event_id] = "gateway result names another wallet than its hold"
        return
    if result.outcome == "CAPTURED":
        captured = result.captured_amount
        if captured is None or captured <= 0 or captured > hold.command.amount:
            plan.dead_letters[result.event_id] = (
                f"captured amount {captured} is not within (0, {hold.command.amount}]"
            )
            return
        _capture(plan, hold, captured, now)
        return
    message = result.reason_message or f"the gateway answered {result.outcome}"
    code = GATEWAY_DECLINED if result.outcome == "DECLINED" else VOIDED
    _release(plan, hold, result.outcome, code, message, now)


def _unhold(plan: BatchPlan, hold: Hold) -> None:
    account = plan.accounts.get(hold.wallet_id)
    if account is None or account.reserved < hold.amount:
        raise LedgerInvariantError(f"hold {hold.command.transaction_id} exceeds reserved")
    plan.accounts[hold.wallet_id] = replace(
        account, available=account.available + hold.amount, reserved=account.reserved - hold.amount
    )
    plan.changed.add(hold.wallet_id)
    plan.holds[hold.command.transaction_id] = replace(hold, open=False)


def _capture(plan: BatchPlan, hold: Hold, captured: Decimal, now: datetime) -> None:
    """Second phase: post ``captured`` (+ fee) from the hold; the rest returns to available."""
    command = hold.command
    _unhold(plan, hold)
    try:
        _move(plan, command, captured, now)
    except _Refused as refused:  # e.g. the merchant's wallet was closed meanwhile
        _release(plan, hold, "REFUSED", refused.code, refused.message, now, unheld=True)
        return
    released = command.amount - captured
    plan.status_updates.append((command.transaction_id, TransactionStatus.COMPLETED.value, now))
    plan.events.append(
        _event(
            command,
            EventType.SETTLED,
            EventStatus.SUCCESS,
            now,
            data={"captured": str(captured), "released": str(released)},
        )
    )
    plan.holds_closed.append((command.transaction_id, "CAPTURED", captured, now))
    plan.ledger_events.append(
        TransactionPosted(
            **command.facts(),
            risk_score=command.risk_score,
            completed_at=now,
            captured_amount=captured,
        )
    )
    plan.posted += 1


def _release(
    plan: BatchPlan,
    hold: Hold,
    outcome: str,
    code: str,
    message: str,
    now: datetime,
    *,
    unheld: bool = False,
) -> None:
    """The held money returns to available; the transaction fails with ``code``."""
    command = hold.command
    if not unheld:
        _unhold(plan, hold)
    plan.status_updates.append((command.transaction_id, TransactionStatus.FAILED.value, None))
    plan.events.append(
        _event(
            command,
            EventType.FAILED,
            EventStatus.FAILURE,
            now,
            error_code=code,
            error_message=message,
            data={"released": str(hold.amount)},
        )
    )
    plan.holds_closed.append((command.transaction_id, outcome, None, now))
    plan.ledger_events.append(
        TransactionFailed(
            **command.facts(), reason_code=code, reason_message=message, failed_at=now
        )
    )
    plan.failed += 1


def _record_failure(
    plan: BatchPlan,
    item: TransactionInput,
    code: str,
    message: str,
    now: datetime,
    *,
    authorized: bool,
) -> None:
    unknown = [
        w
        for w in (item.source_wallet_id, item.destination_wallet_id)
        if w is not None and w not in plan.accounts
    ]
    if unknown:
        plan.dead_letters[item.event_id] = f"{RejectReason.WALLET_NOT_FOUND}: {message}"
        if authorized:  # whatever the stream holds for it must still be released
            plan.ledger_events.append(
                TransactionFailed(
                    **item.facts(), reason_code=code, reason_message=message, failed_at=now
                )
            )
        plan.failed += 1
        return
    plan.transactions.append(
        _transaction_row(item, TransactionStatus.FAILED, item.risk_score, now, completed_at=None)
    )
    plan.events.append(_event(item, EventType.INITIATED, EventStatus.SUCCESS, item.requested_at))
    if authorized:
        plan.events.append(_event(item, EventType.AUTHORIZED, EventStatus.SUCCESS, item.decided_at))
    plan.events.append(
        _event(
            item, EventType.FAILED, EventStatus.FAILURE, now, error_code=code, error_message=message
        )
    )
    if authorized:  # the stream holds a reservation for it: tell it to release
        plan.ledger_events.append(
            TransactionFailed(
                **item.facts(), reason_code=code, reason_message=message, failed_at=now
            )
        )
    plan.failed += 1


def _transaction_row(
    item: TransactionInput,
    status: TransactionStatus,
    risk_score: Decimal | None,
    now: datetime,
    completed_at: datetime | None,
) -> tuple:
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


def _event(
    item: TransactionInput,
    event_type: EventType,
    status: EventStatus,
    at: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
    data: dict[str, str] | None = None,
) -> tuple:
    return (
        _next_id(),
        item.transaction_id,
        event_type.value,
        status.value,
        {"client_id": str(item.client_id), **(data or {})},
        error_code,
        error_message,
        at,
    )


def check_entries_balanced(entries: list[tuple]) -> None:
    """Second look before writing: per transaction, debits equal credits."""
    totals: dict[uuid.UUID, Decimal] = {}
    for _entry_id, transaction_id, _wallet, entry_type, amount, _after, _at in entries:
        signed = amount if entry_type == EntryType.CREDIT.value else -amount
        totals[transaction_id] = totals.get(transaction_id, Decimal(0)) + signed
    unbalanced = [t for t, total in totals.items() if total != 0]
    if unbalanced:
        raise LedgerInvariantError(f"unbalanced transactions in batch: {unbalanced[:5]}")

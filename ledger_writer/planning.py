"""Turn a batch of ledger inputs into the rows to write: pure, no I/O.

The writer owns its wallets' balances (one writer per shard), so it can apply a whole batch
in memory, in offset order, checking every invariant before anything is written: entries
sum to zero, no customer balance goes below zero, a transaction id posts once. A command
that breaks a business rule becomes a FAILED transaction with a reason; nothing else moves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from domain.exceptions import LedgerInvariantError, UnprocessableRecord
from domain.records import (
    CreditFromShard,
    DuplicateDiscarded,
    GatewayResponded,
    PostTransaction,
    TransactionFailed,
    TransactionRejected,
)
from domain.reversals import reversal_of
from domain.transactions import (
    EntryType,
    EventStatus,
    EventType,
    RejectReason,
    TransactionStatus,
)
from ledger_writer.admission import UNPROCESSABLE_RECORD
from ledger_writer.book import (
    Account,
    BatchPlan,
    Hold,
    LedgerInput,
    Original,
    Refused,
    TransactionInput,
    TwoPhase,
    announce,
    check_amounts,
    event_row,
    move,
    transaction_row,
)
from ledger_writer.reversal import reverse
from ledger_writer.rows import Row
from ledger_writer.sharding import credit_from_shard
from ledger_writer.two_phase import (
    HOLD_EXPIRED,
    apply_gateway,
    open_hold,
    refuse_result,
    release_hold,
)

__all__ = [
    "Account",
    "BatchPlan",
    "Hold",
    "LedgerInput",
    "Original",
    "TwoPhase",
    "check_entries_balanced",
    "plan_batch",
    "wallets_of",
]


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
    already_posted: Iterable[uuid.UUID],
    accounts: dict[uuid.UUID, Account],
    now: datetime,
    *,
    two_phase: TwoPhase | None = None,
    holds: dict[uuid.UUID, Hold] | None = None,
    expired: Iterable[uuid.UUID] = (),
    originals: dict[uuid.UUID, Original] | None = None,
    pending: Iterable[uuid.UUID] = (),
    shard: int = 0,
    unprocessable: Mapping[uuid.UUID, UnprocessableRecord] | None = None,
) -> BatchPlan:
    """Plan one batch in input order. ``holds`` are the stored holds the batch's gateway
    results and ``expired`` name (the writer loads them); ``pending`` are the already
    recorded ids still held (PENDING); without ``two_phase`` every type posts at once.
    ``shard`` is this writer's shard: ``accounts`` of other shards' wallets carry theirs.
    ``unprocessable`` names (by event id) the inputs the ledger cannot store as they came
    (``admission``): each fails alone, from its storable copy, and is dead-lettered."""
    unprocessable = unprocessable or {}
    plan = BatchPlan(
        accounts=dict(accounts),
        loaded=accounts,
        holds=dict(holds or {}),
        originals=dict(originals or {}),
        shard=shard,
    )
    seen = set(already_posted)
    still_pending = set(pending)
    for item in inputs:
        if isinstance(item, GatewayResponded):
            refusal = unprocessable.get(item.event_id) if unprocessable else None
            if refusal is None:
                apply_gateway(plan, item, now)
            else:
                refuse_result(plan, item, refusal, now)
            continue
        if isinstance(item, CreditFromShard):
            _credit(plan, item, seen, now)
            continue
        if item.transaction_id in seen:
            plan.skipped_duplicates += 1
            held = plan.holds.get(item.transaction_id)
            still_held = item.transaction_id in still_pending or (held is not None and held.open)
            # The stream may hold funds for the repeat; but while the original is held, the
            # stream's one hold under this id is the original's, and must stay.
            if isinstance(item, PostTransaction) and not still_held:
                plan.ledger_events.append(DuplicateDiscarded(**item.facts(), discarded_at=now))
            continue
        seen.add(item.transaction_id)
        refusal = unprocessable.get(item.event_id) if unprocessable else None
        if refusal is not None:
            _record_unprocessable(plan, item, refusal, now)
            continue
        if _expired_command(item, now):  # the stream's hold ends a grace after expires_at
            message = f"read after its deadline {item.expires_at}"  # type: ignore[union-attr]
            _record_failure(plan, item, RejectReason.COMMAND_EXPIRED, message, now, authorized=True)
            continue
        if isinstance(item, TransactionRejected):
            _record_failure(
                plan, item, item.reason_code, item.reason_message, now, authorized=False
            )
            continue
        try:
            original_id = reversal_of(item.metadata)
            if original_id is not None:
                reverse(plan, item, original_id, now)
            elif two_phase is not None and item.transaction_type in two_phase.types:
                hold_expires_at = now + two_phase.hold_timeout
                if item.expires_at is not None:  # never held past the command's deadline
                    hold_expires_at = min(hold_expires_at, item.expires_at)
                open_hold(plan, item, now, hold_expires_at)
            else:
                _post(plan, item, now)
        except Refused as refused:
            _record_failure(plan, item, refused.code, refused.message, now, authorized=True)
    for transaction_id in expired:
        hold = plan.holds.get(transaction_id)
        if hold is not None and hold.open:
            message = f"no gateway answer by {hold.expires_at.isoformat()}"
            release_hold(plan, hold, "EXPIRED", HOLD_EXPIRED, message, now)
    return plan


def _expired_command(item: TransactionInput, now: datetime) -> bool:
    """A command read after its ``expires_at`` fails (COMMAND_EXPIRED): the stream releases
    its reservation a grace period after that deadline, so a posting now could spend money
    the stream has given back (docs/topics.md, "Holds expire")."""
    expires_at = getattr(item, "expires_at", None)
    return isinstance(item, PostTransaction) and expires_at is not None and now > expires_at


def _credit(plan: BatchPlan, leg: CreditFromShard, seen: set[uuid.UUID], now: datetime) -> None:
    if leg.transaction_id in seen:  # replayed: the stream heard of it the first time
        plan.skipped_duplicates += 1
        return
    try:
        credit_from_shard(plan, leg, now)
    except Refused as refused:
        plan.dead_letters[leg.event_id] = f"{refused.code}: {refused.message}"
        return
    seen.add(leg.transaction_id)


def _post(plan: BatchPlan, command: PostTransaction, now: datetime) -> None:
    check_amounts(command)
    move(plan, command, command.amount, now)
    plan.transactions.append(
        transaction_row(
            command, TransactionStatus.COMPLETED, command.risk_score, now, completed_at=now
        )
    )
    plan.events.extend(
        [
            event_row(command, EventType.INITIATED, EventStatus.SUCCESS, command.requested_at),
            event_row(command, EventType.AUTHORIZED, EventStatus.SUCCESS, command.decided_at),
            event_row(command, EventType.SETTLED, EventStatus.SUCCESS, now),
        ]
    )
    announce(plan, command, now)
    plan.posted += 1


def _record_unprocessable(
    plan: BatchPlan, item: TransactionInput, refusal: UnprocessableRecord, now: datetime
) -> None:
    """FAILED with UNPROCESSABLE_RECORD (from the storable copy ``item``), announced when
    the stream holds funds for it, and the record dead-lettered with the reason."""
    _record_failure(
        plan,
        item,
        UNPROCESSABLE_RECORD,
        refusal.message,
        now,
        authorized=isinstance(item, PostTransaction),
        row=refusal.row_storable,
    )
    plan.dead_letters.setdefault(item.event_id, f"{UNPROCESSABLE_RECORD}: {refusal.message}")


def _record_failure(
    plan: BatchPlan,
    item: TransactionInput,
    code: str,
    message: str,
    now: datetime,
    *,
    authorized: bool,
    row: bool = True,
) -> None:
    """A FAILED row and its events; without a row when a wallet named does not exist or
    ``row`` is False (the facts break the table's checks): then only dead-lettered."""
    unknown = [
        w
        for w in (item.source_wallet_id, item.destination_wallet_id)
        if w is not None and w not in plan.accounts
    ]
    if unknown or not row:
        reason = RejectReason.WALLET_NOT_FOUND if unknown else code
        plan.dead_letters[item.event_id] = f"{reason}: {message}"
        if authorized:  # whatever the stream holds for it must still be released
            plan.ledger_events.append(
                TransactionFailed(
                    **item.facts(), reason_code=code, reason_message=message, failed_at=now
                )
            )
        plan.failed += 1
        return
    plan.transactions.append(
        transaction_row(item, TransactionStatus.FAILED, item.risk_score, now, completed_at=None)
    )
    plan.events.append(event_row(item, EventType.INITIATED, EventStatus.SUCCESS, item.requested_at))
    if authorized:
        plan.events.append(
            event_row(item, EventType.AUTHORIZED, EventStatus.SUCCESS, item.decided_at)
        )
    plan.events.append(
        event_row(
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


def check_entries_balanced(entries: list[Row]) -> None:
    """Second look before writing: per transaction, debits equal credits."""
    totals: dict[uuid.UUID, Decimal] = {}
    for _entry_id, transaction_id, _wallet, entry_type, amount, _after, _at in entries:
        signed = amount if entry_type == EntryType.CREDIT.value else -amount
        totals[transaction_id] = totals.get(transaction_id, Decimal(0)) + signed
    unbalanced = [t for t, total in totals.items() if total != 0]
    if unbalanced:
        raise LedgerInvariantError(f"unbalanced transactions in batch: {unbalanced[:5]}")

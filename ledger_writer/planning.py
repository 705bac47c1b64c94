"""Turn a batch of ledger inputs into the rows to write: pure, no I/O.

The writer owns its wallets' balances (one writer per shard), so it can apply a whole batch
in memory, in offset order, checking every invariant before anything is written: entries
sum to zero, no customer balance goes below zero, a transaction id posts once. A command
that breaks a business rule becomes a FAILED transaction with a reason; nothing else moves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from domain.exceptions import LedgerInvariantError
from domain.records import (
    DuplicateDiscarded,
    LedgerEvent,
    PostTransaction,
    TransactionFailed,
    TransactionPosted,
    TransactionRejected,
)
from domain.transactions import (
    EntryType,
    EventStatus,
    EventType,
    RejectReason,
    TransactionStatus,
    postings_for,
)

LedgerInput = PostTransaction | TransactionRejected


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
    #: Inputs naming a wallet that does not exist: the schema's foreign keys forbid even a
    #: FAILED row, so they go to the dead-letter topic (transaction id → reason).
    dead_letters: dict[uuid.UUID, str] = field(default_factory=dict)
    posted: int = 0
    failed: int = 0
    skipped_duplicates: int = 0


class _Refused(Exception):
    def __init__(self, code: RejectReason, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def wallets_of(inputs: Iterable[LedgerInput]) -> set[uuid.UUID]:
    wallets = set()
    for item in inputs:
        wallets.update(w for w in (item.source_wallet_id, item.destination_wallet_id) if w)
    return wallets


def plan_batch(
    inputs: list[LedgerInput],
    already_posted: set[uuid.UUID],
    accounts: dict[uuid.UUID, Account],
    now: datetime,
) -> BatchPlan:
    plan = BatchPlan(accounts=dict(accounts))
    seen = set(already_posted)
    for item in inputs:
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
            _post(plan, item, now)
        except _Refused as refused:
            _record_failure(plan, item, refused.code, refused.message, now, authorized=True)
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


def _post(plan: BatchPlan, command: PostTransaction, now: datetime) -> None:
    if command.amount <= 0 or command.fee_amount < 0:
        raise _Refused(RejectReason.INVALID_TRANSACTION, "amount must be > 0 and fee >= 0")
    if command.total_amount != command.amount + command.fee_amount:
        raise _Refused(RejectReason.INVALID_TRANSACTION, "total_amount is not amount + fee")
    postings = postings_for(
        command.transaction_type,
        command.source_wallet_id,
        command.destination_wallet_id,
        command.amount,
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
                uuid.uuid4(),
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
    plan.ledger_events.append(
        TransactionPosted(**command.facts(), risk_score=command.risk_score, completed_at=now)
    )
    plan.posted += 1


def _record_failure(
    plan: BatchPlan, item: LedgerInput, code: str, message: str, now: datetime, *, authorized: bool
) -> None:
    unknown = [
        w
        for w in (item.source_wallet_id, item.destination_wallet_id)
        if w is not None and w not in plan.accounts
    ]
    if unknown:
        plan.dead_letters[item.transaction_id] = f"{RejectReason.WALLET_NOT_FOUND}: {message}"
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
    item: LedgerInput,
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
    item: LedgerInput,
    event_type: EventType,
    status: EventStatus,
    at: datetime,
    error_code: str | None = None,
    error_message: str | None = None,
) -> tuple:
    return (
        uuid.uuid4(),
        item.transaction_id,
        event_type.value,
        status.value,
        {"client_id": str(item.client_id)},
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

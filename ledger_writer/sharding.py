"""The ledger across shards, in the batch planner: which shard records an input, and the
destination shard's half of a transfer between shards. Pure, no I/O.

A transaction between wallets of two shards is two single-database transactions, each
balanced on its own shard: the payer's shard debits the payer and credits its clearing
account for the payee's shard (``book.move``), and sends ``CreditFromShard`` through its
outbox; the payee's shard debits its clearing account for the payer's shard and credits the
payee (``credit_from_shard``), and announces the ``TransactionPosted``. Both shards record
the transaction's row and events; between the two steps the amount is "in flight", held by
the pair's clearing accounts, which net to zero once both have posted.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from domain.exceptions import LedgerInvariantError
from domain.records import CreditFromShard, GatewayResponded, PostTransaction
from domain.shards import clearing_wallet_id
from domain.transactions import (
    EntryType,
    EventStatus,
    EventType,
    Posting,
    RejectReason,
    TransactionStatus,
)
from ledger_writer.book import (
    BatchPlan,
    LedgerInput,
    Refused,
    apply_postings,
    event_row,
    posted_event,
    transaction_row,
)


def home_shard(item: LedgerInput, owners: Mapping[uuid.UUID, int]) -> int:
    """The shard that records ``item``: the payer's for a command or rejection (its source
    wallet, or a deposit's destination), the held wallet's for a gateway answer, the named
    shard for a shard credit. ``owners`` maps customer wallets to their shards; an input
    naming no known wallet goes to shard 0, which records it as failed."""
    if isinstance(item, CreditFromShard):
        return item.to_shard
    if isinstance(item, GatewayResponded):
        return owners.get(item.wallet_id, 0)
    for wallet in (item.source_wallet_id, item.destination_wallet_id):
        if wallet is not None and wallet in owners:
            return owners[wallet]
    return 0


def credit_from_shard(plan: BatchPlan, leg: CreditFromShard, now: datetime) -> None:
    """The payee's shard: its clearing account for the payer's shard pays the payee.

    The payer's shard checked the payee (exists, active, currency) before it moved the
    money, and a wallet's existence and currency never change, so a refusal here means the
    shards disagree: ``Refused``, and the writer sends the command to the dead-letter topic
    (the amount stays in flight, which ``ledger verify`` reports)."""
    if leg.to_shard != plan.shard:
        raise LedgerInvariantError(
            f"credit of {leg.transaction_id} is for shard {leg.to_shard}, not {plan.shard}"
        )
    if leg.credit_amount <= 0 or leg.credit_amount > leg.amount:
        raise Refused(
            RejectReason.INVALID_TRANSACTION, "a shard credit moves (0, amount] of its transaction"
        )
    if leg.from_shard == leg.to_shard or leg.wallet_id != leg.destination_wallet_id:
        raise Refused(
            RejectReason.INVALID_TRANSACTION,
            "a shard credit comes from another shard and pays the transaction's destination",
        )
    payee = plan.accounts.get(leg.wallet_id)
    if payee is None or payee.is_system or payee.remote_shard is not None:
        raise Refused(
            RejectReason.WALLET_NOT_FOUND, f"wallet {leg.wallet_id} is not on shard {plan.shard}"
        )
    if payee.currency_code != leg.currency_code:
        raise Refused(
            RejectReason.CURRENCY_MISMATCH,
            f"wallet {leg.wallet_id} holds {payee.currency_code}, not {leg.currency_code}",
        )
    clearing = clearing_wallet_id(plan.shard, leg.from_shard, leg.currency_code)
    postings = [
        Posting(clearing, EntryType.DEBIT, leg.credit_amount),
        Posting(leg.wallet_id, EntryType.CREDIT, leg.credit_amount),
    ]
    # The payee's status was the payer's shard's to judge: a transfer decided before the
    # wallet was suspended still arrives, as it would on a single shard.
    apply_postings(plan, leg.transaction_id, postings, leg.currency_code, now, active=False)
    command = PostTransaction(**leg.facts(), risk_score=leg.risk_score, decided_at=leg.decided_at)
    plan.transactions.append(
        transaction_row(command, TransactionStatus.COMPLETED, leg.risk_score, now, completed_at=now)
    )
    data = {"from_shard": str(leg.from_shard), "credited": str(leg.credit_amount)}
    plan.events.extend(
        [
            event_row(command, EventType.INITIATED, EventStatus.SUCCESS, leg.requested_at),
            event_row(command, EventType.AUTHORIZED, EventStatus.SUCCESS, leg.decided_at),
            event_row(command, EventType.SETTLED, EventStatus.SUCCESS, now, data=data),
        ]
    )
    if leg.captured_amount is not None:
        _mirror_capture(plan, command, leg, now)
    plan.ledger_events.append(posted_event(command, now, captured_amount=leg.captured_amount))
    plan.posted += 1


def _mirror_capture(
    plan: BatchPlan, command: PostTransaction, leg: CreditFromShard, now: datetime
) -> None:
    """A two-phase payment captured in part: the payee's shard keeps a closed copy of the
    payer's hold, so what moved (the captured amount) is known where a reversal posts."""
    if command.source_wallet_id is None:
        raise LedgerInvariantError(f"captured payment {leg.transaction_id} has no payer")
    plan.holds_opened.append(
        (
            command.transaction_id,
            command.source_wallet_id,
            command.total_amount,
            command.currency_code,
            command.model_dump_json().encode(),
            leg.debited_at,
            now,
        )
    )
    plan.holds_closed.append((command.transaction_id, "CAPTURED", leg.captured_amount, now))

"""Reversals in the batch planner: checked against the original, posted at once, recorded
against it (domain/reversals.py says how a reversal is typed). Pure, no I/O."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime

from domain.records import (
    PostTransaction,
)
from domain.reversals import ReversalReason, mirror
from domain.transactions import (
    EventStatus,
    EventType,
    TransactionStatus,
)
from ledger_writer.book import (
    BatchPlan,
    Refused,
    announce,
    check_amounts,
    event_row,
    move,
    next_id,
    transaction_row,
)


def reverse(
    plan: BatchPlan, command: PostTransaction, original_id: uuid.UUID, now: datetime
) -> None:
    """A (partial) reversal: checked against its original, posted at once (never held at
    the gateway: the money comes back), and recorded against the original."""
    check_amounts(command)
    original = plan.originals.get(original_id)
    if original is None or original.status != TransactionStatus.COMPLETED.value:
        state = "does not exist" if original is None else f"is {original.status}"
        raise Refused(ReversalReason.NOT_REVERSIBLE, f"transaction {original_id} {state}")
    expected = mirror(
        original.transaction_type, original.source_wallet_id, original.destination_wallet_id
    )
    actual = (command.transaction_type, command.source_wallet_id, command.destination_wallet_id)
    if actual != expected or command.currency_code != original.currency_code:
        raise Refused(ReversalReason.MISMATCH, f"not the mirror of transaction {original_id}")
    if command.fee_amount != 0:
        raise Refused(ReversalReason.MISMATCH, "a reversal carries no fee")
    remaining = original.moved - original.reversed
    if command.amount > remaining:
        raise Refused(
            ReversalReason.EXCEEDS_ORIGINAL,
            f"only {remaining} {command.currency_code} of {original_id} is left to reverse",
        )
    move(plan, command, command.amount, now)
    reversed_total = original.reversed + command.amount
    plan.originals[original_id] = replace(original, reversed=reversed_total)
    if reversed_total == original.moved:
        plan.originals[original_id] = replace(
            plan.originals[original_id], status=TransactionStatus.REVERSED.value
        )
        plan.status_updates.append((original_id, TransactionStatus.REVERSED.value, None))
    plan.reversals.append((command.transaction_id, original_id, command.amount, now))
    plan.transactions.append(
        transaction_row(
            command, TransactionStatus.COMPLETED, command.risk_score, now, completed_at=now
        )
    )
    link = {"reversal_of": str(original_id)}
    plan.events.extend(
        [
            event_row(command, EventType.INITIATED, EventStatus.SUCCESS, command.requested_at),
            event_row(command, EventType.AUTHORIZED, EventStatus.SUCCESS, command.decided_at),
            event_row(command, EventType.SETTLED, EventStatus.SUCCESS, now, data=link),
            # The original's own timeline shows each part reversed.
            (
                next_id(),
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
    announce(plan, command, now)
    plan.posted += 1

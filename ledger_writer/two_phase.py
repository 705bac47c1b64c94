"""Two-phase PAYMENT and WITHDRAWAL in the batch planner: hold, then apply the payment
gateway's answer (capture, possibly partial; decline; void) or the expiry. Pure, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from domain.exceptions import LedgerInvariantError, UnprocessableRecord
from domain.records import (
    AuthorizePayment,
    GatewayResponded,
    PostTransaction,
    TransactionFailed,
)
from domain.transactions import (
    EventStatus,
    EventType,
    RejectReason,
    TransactionStatus,
    postings_for,
)
from ledger_writer.book import (
    BatchPlan,
    Hold,
    Refused,
    announce,
    check_amounts,
    checked_account,
    event_row,
    move,
    transaction_row,
)

#: Reason codes of a two-phase transaction that did not complete.
GATEWAY_DECLINED = "GATEWAY_DECLINED"

VOIDED = "VOIDED"

HOLD_EXPIRED = "HOLD_EXPIRED"


def open_hold(
    plan: BatchPlan, command: PostTransaction, now: datetime, expires_at: datetime
) -> None:
    """First phase: every wallet checked as for a posting, the payer's total held."""
    check_amounts(command)
    postings = postings_for(
        command.transaction_type,
        command.source_wallet_id,
        command.destination_wallet_id,
        command.amount,
        command.fee_amount,
        command.currency_code,
    )
    for posting in postings:
        checked_account(plan, posting.wallet_id, command.currency_code)
    payer_id = command.source_wallet_id
    if payer_id is None:
        raise Refused(RejectReason.INVALID_TRANSACTION, "a held transaction needs a source")
    payer = plan.accounts[payer_id]
    if payer.remote_shard is not None:
        raise LedgerInvariantError(
            f"hold of {command.transaction_id}: the payer {payer_id} belongs to shard "
            f"{payer.remote_shard}, not to shard {plan.shard}"
        )
    if payer.is_system or payer.available < command.total_amount:
        raise Refused(
            RejectReason.INSUFFICIENT_FUNDS,
            f"wallet {payer_id} lacks {command.total_amount - payer.available} "
            f"{command.currency_code}",
        )
    plan.accounts[payer_id] = payer._replace(
        available=payer.available - command.total_amount,
        reserved=payer.reserved + command.total_amount,
    )
    plan.changed.add(payer_id)
    plan.transactions.append(
        transaction_row(command, TransactionStatus.PENDING, command.risk_score, now, None)
    )
    plan.events.extend(
        [
            event_row(command, EventType.INITIATED, EventStatus.SUCCESS, command.requested_at),
            event_row(
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


def apply_gateway(plan: BatchPlan, result: GatewayResponded, now: datetime) -> None:
    hold = plan.holds.get(result.transaction_id)
    if hold is None or not hold.open or now > hold.expires_at:
        # a repeat, or an answer after the expiry (the sweep releases the hold): never a
        # capture past the hold's deadline, which is at most the command's own
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
        capture_hold(plan, hold, captured, now)
        return
    message = result.reason_message or f"the gateway answered {result.outcome}"
    code = GATEWAY_DECLINED if result.outcome == "DECLINED" else VOIDED
    release_hold(plan, hold, result.outcome, code, message, now)


def refuse_result(
    plan: BatchPlan, result: GatewayResponded, refusal: UnprocessableRecord, now: datetime
) -> None:
    """A gateway answer the ledger cannot store: its hold, if still open, is released and
    the transaction fails with UNPROCESSABLE_RECORD; the answer is dead-lettered."""
    plan.dead_letters[result.event_id] = f"{refusal.code}: {refusal.message}"
    hold = plan.holds.get(result.transaction_id)
    if hold is None or not hold.open or result.wallet_id != hold.wallet_id:
        plan.ignored_results += 1
        return
    release_hold(plan, hold, "REFUSED", refusal.code, refusal.message, now)


def unhold(plan: BatchPlan, hold: Hold) -> None:
    account = plan.accounts.get(hold.wallet_id)
    if account is None or account.reserved < hold.amount:
        raise LedgerInvariantError(f"hold {hold.command.transaction_id} exceeds reserved")
    plan.accounts[hold.wallet_id] = account._replace(
        available=account.available + hold.amount, reserved=account.reserved - hold.amount
    )
    plan.changed.add(hold.wallet_id)
    plan.holds[hold.command.transaction_id] = replace(hold, open=False)


def capture_hold(plan: BatchPlan, hold: Hold, captured: Decimal, now: datetime) -> None:
    """Second phase: post ``captured`` (+ fee) from the hold; the rest returns to available."""
    command = hold.command
    unhold(plan, hold)
    try:
        move(plan, command, captured, now)
    except Refused as refused:  # e.g. the merchant's wallet was closed meanwhile
        release_hold(plan, hold, "REFUSED", refused.code, refused.message, now, unheld=True)
        return
    released = command.amount - captured
    plan.status_updates.append((command.transaction_id, TransactionStatus.COMPLETED.value, now))
    plan.events.append(
        event_row(
            command,
            EventType.SETTLED,
            EventStatus.SUCCESS,
            now,
            data={"captured": str(captured), "released": str(released)},
        )
    )
    plan.holds_closed.append((command.transaction_id, "CAPTURED", captured, now))
    announce(plan, command, now, captured)
    plan.posted += 1


def release_hold(
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
        unhold(plan, hold)
    plan.status_updates.append((command.transaction_id, TransactionStatus.FAILED.value, None))
    plan.events.append(
        event_row(
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

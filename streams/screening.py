"""The decision for one request, given its wallet's state: approve and hold, or reject.

Pure. Steps in order: idempotency (a request whose hold is open is a replay), spending
limits (``streams.limits``), then the balance reservation. An approval charges the limit
counters; a rejection changes nothing. (Fraud scoring plugs in before the reservation.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.records import PostTransaction, TransactionRejected, TransactionRequested, utc_now
from domain.transactions import RejectReason, TransactionType
from streams.limits import Limit, LimitUsage
from streams.wallet_state import WalletState


@dataclass(frozen=True)
class Outcome:
    command: PostTransaction | TransactionRejected | None  # None: a replay, nothing to send
    state_changed: bool
    usage_changed: bool = field(default=False)


def _reject(request: TransactionRequested, reason: RejectReason, message: str) -> Outcome:
    rejection = TransactionRejected(
        **request.facts(), reason_code=reason.value, reason_message=message, decided_at=utc_now()
    )
    return Outcome(rejection, False)


def screen(
    request: TransactionRequested,
    state: WalletState,
    limits: list[Limit] | None = None,
    usage: LimitUsage | None = None,
) -> Outcome:
    """``limits`` are those that apply to this request (``streams.limits.applicable``);
    ``usage`` is the wallet's counters, charged in place on approval."""
    transaction_id = str(request.transaction_id)
    if transaction_id in state.holds:
        return Outcome(None, False)
    limits = limits or []
    usage = usage if usage is not None else LimitUsage()
    at, amount = request.requested_at, request.amount
    breached = usage.breached(limits, amount, at)
    if breached is not None:
        used_amount, used_count = usage.used(breached, at)
        return _reject(
            request,
            RejectReason.LIMIT_EXCEEDED,
            f"{breached.name}: {amount} {request.currency_code} would make "
            f"{used_amount + amount} of {breached.max_amount} and {used_count + 1} of "
            f"{breached.max_count} transactions this period",
        )
    if request.transaction_type is TransactionType.DEPOSIT:
        # Money from outside: nothing to hold; the credit counts once the ledger posts it.
        return _approve(request, False, limits, usage)
    if not state.can_reserve(request.total_amount):
        return _reject(
            request,
            RejectReason.INSUFFICIENT_FUNDS,
            f"available {state.available} {request.currency_code} is less "
            f"than {request.total_amount}",
        )
    state.reserve(transaction_id, request.total_amount)
    return _approve(request, True, limits, usage)


def _approve(
    request: TransactionRequested, held: bool, limits: list[Limit], usage: LimitUsage
) -> Outcome:
    usage.charge(str(request.transaction_id), limits, request.amount, request.requested_at)
    command = PostTransaction(**request.facts(), decided_at=utc_now())
    return Outcome(command, held, usage_changed=bool(limits))

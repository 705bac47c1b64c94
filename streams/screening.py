"""The decision for one request, given its wallet's state: approve and hold, or reject.

Pure. Steps in order: idempotency (a request whose hold is open is a replay), then the
balance reservation. (Limits and fraud scoring plug in before the reservation.)
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.records import PostTransaction, TransactionRejected, TransactionRequested, utc_now
from domain.transactions import RejectReason, TransactionType
from streams.wallet_state import WalletState


@dataclass(frozen=True)
class Outcome:
    command: PostTransaction | TransactionRejected | None  # None: a replay, nothing to send
    state_changed: bool


def screen(request: TransactionRequested, state: WalletState) -> Outcome:
    transaction_id = str(request.transaction_id)
    decided_at = utc_now()
    if transaction_id in state.holds:
        return Outcome(None, False)
    if request.transaction_type is TransactionType.DEPOSIT:
        # Money from outside: nothing to hold; the credit counts once the ledger posts it.
        return Outcome(PostTransaction(**request.facts(), decided_at=decided_at), False)
    if not state.can_reserve(request.total_amount):
        return Outcome(
            TransactionRejected(
                **request.facts(),
                reason_code=RejectReason.INSUFFICIENT_FUNDS.value,
                reason_message=(
                    f"available {state.available} {request.currency_code} is less "
                    f"than {request.total_amount}"
                ),
                decided_at=decided_at,
            ),
            False,
        )
    state.reserve(transaction_id, request.total_amount)
    return Outcome(PostTransaction(**request.facts(), decided_at=decided_at), True)

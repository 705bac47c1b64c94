"""The decision for one request, given its wallet's state: approve and hold, hold for
review, or reject.

Pure. Steps in order: idempotency (a request whose hold is open is a replay), spending
limits (``streams.limits``), the fraud decision (``streams.decision``: decline, review or
approve), then the balance reservation. An approval or a review charges the limit counters
and holds the funds; a rejection changes nothing. A review's outcome comes later
(``decide_review``): approve sends the held transaction to the ledger; decline releases the
hold and gives the limit charge back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from domain.records import (
    PostTransaction,
    ReviewDecided,
    ReviewRequested,
    TransactionFacts,
    TransactionRejected,
    TransactionRequested,
    utc_now,
)
from domain.transactions import RejectReason, TransactionType
from streams.decision import APPROVED, Assessment, Decision
from streams.limits import Limit, LimitUsage
from streams.reviews import PendingReview, PendingReviews
from streams.wallet_state import WalletState

Command = PostTransaction | TransactionRejected | ReviewRequested


@dataclass(frozen=True)
class Outcome:
    command: Command | None  # None: a replay (or a decided review), nothing to send
    state_changed: bool
    usage_changed: bool = field(default=False)
    reviews_changed: bool = field(default=False)


def _reject(
    facts: TransactionFacts, reason: RejectReason, message: str, assessment: Assessment | None
) -> TransactionRejected:
    return TransactionRejected(
        **facts.facts(),
        reason_code=reason.value,
        reason_message=message[:1000],
        risk_score=None if assessment is None else assessment.risk_score,
        decided_at=utc_now(),
        **({} if assessment is None else _scored(assessment)),
    )


def _scored(assessment: Assessment) -> dict[str, object]:
    """Which model decided and what the challengers said, for the records."""
    return {"scored_by": assessment.scored_by, "shadow_scores": assessment.shadow_scores}


def _fraud_message(assessment: Assessment) -> str:
    """Why a request is declined as fraud: the policy rule that said so, or the score."""
    if assessment.rule is None:
        return f"risk score {assessment.risk_score} is above the policy's threshold"
    why = f"policy v{assessment.policy_version} rule {assessment.rule!r}"
    if assessment.decision is Decision.REVIEW:  # escalated: no room to hold another review
        return f"{why} asks for a review, and the wallet's review queue is full"
    return f"{why} (risk score {assessment.risk_score})"


def screen(
    request: TransactionRequested,
    state: WalletState,
    limits: list[Limit] | None = None,
    usage: LimitUsage | None = None,
    assessment: Assessment = APPROVED,
    reviews: PendingReviews | None = None,
    review_timeout: timedelta = timedelta(minutes=5),
) -> Outcome:
    """``limits`` are those that apply to this request (``streams.limits.applicable``);
    ``usage`` (the wallet's counters) and ``reviews`` are changed in place."""
    transaction_id = str(request.transaction_id)
    if transaction_id in state.holds:
        return Outcome(None, False)
    limits = limits or []
    usage = usage if usage is not None else LimitUsage()
    reviews = reviews if reviews is not None else PendingReviews()
    at, amount = request.requested_at, request.amount
    breached = usage.breached(limits, amount, at)
    if breached is not None:
        used_amount, used_count = usage.used(breached, at)
        message = (
            f"{breached.name}: {amount} {request.currency_code} would make "
            f"{used_amount + amount} of {breached.max_amount} and {used_count + 1} of "
            f"{breached.max_count} transactions this period"
        )
        return Outcome(_reject(request, RejectReason.LIMIT_EXCEEDED, message, assessment), False)
    decision = assessment.decision
    if decision is Decision.REVIEW and reviews.full:
        decision = Decision.DECLINE  # never an unbounded review queue
    if decision is Decision.DECLINE:
        message = _fraud_message(assessment)
        return Outcome(_reject(request, RejectReason.FRAUD_DECLINED, message, assessment), False)
    if request.transaction_type is TransactionType.DEPOSIT:
        # Money from outside: nothing to hold (nor to review); it counts once posted.
        return _approve(request, False, limits, usage, assessment)
    if not state.can_reserve(request.total_amount):
        message = (
            f"available {state.available} {request.currency_code} is less "
            f"than {request.total_amount}"
        )
        return Outcome(
            _reject(request, RejectReason.INSUFFICIENT_FUNDS, message, assessment), False
        )
    state.reserve(transaction_id, request.total_amount)
    if decision is Decision.REVIEW:
        usage.charge(transaction_id, limits, amount, at)
        decided_at = utc_now()
        held = ReviewRequested(
            **request.facts(),
            risk_score=assessment.risk_score,
            decided_at=decided_at,
            review_deadline=decided_at + review_timeout,
            **_scored(assessment),
        )
        reviews.hold(
            PendingReview(
                request,
                assessment.risk_score,
                held.review_deadline,
                assessment.scored_by,
                assessment.shadow_scores,
            )
        )
        return Outcome(held, True, usage_changed=bool(limits), reviews_changed=True)
    return _approve(request, True, limits, usage, assessment)


def _approve(
    request: TransactionRequested,
    held: bool,
    limits: list[Limit],
    usage: LimitUsage,
    assessment: Assessment,
) -> Outcome:
    usage.charge(str(request.transaction_id), limits, request.amount, request.requested_at)
    # The facts come from a validated request and the rest is ours: skip re-validation
    # (half the cost of a decision on the hot path).
    command = PostTransaction.model_construct(
        **request.facts(),
        risk_score=assessment.risk_score,
        decided_at=utc_now(),
        event_id=uuid.uuid4(),  # given, not defaulted: pydantic inspects a default factory
        **_scored(assessment),
    )
    return Outcome(command, held, usage_changed=bool(limits))


def decide_review(
    decided: ReviewDecided, state: WalletState, usage: LimitUsage, reviews: PendingReviews
) -> Outcome:
    """Apply an analyst's decision (or the timeout's decline) to a held transaction, once."""
    review = reviews.take(str(decided.transaction_id))
    if review is None:
        return Outcome(None, False)  # decided already: the first decision won
    request = review.request
    scored = {"scored_by": review.scored_by, "shadow_scores": review.shadow_scores}
    if decided.decision == "APPROVE":
        command = PostTransaction(
            **request.facts(), risk_score=review.risk_score, decided_at=utc_now(), **scored
        )
        return Outcome(command, False, reviews_changed=True)
    transaction_id = str(request.transaction_id)
    state.release(transaction_id)
    usage.give_back(transaction_id)
    note = f": {decided.note}" if decided.note else ""
    rejection = TransactionRejected(
        **request.facts(),
        reason_code=RejectReason.FRAUD_DECLINED.value,
        reason_message=f"declined on review by {decided.decided_by}{note}"[:1000],
        risk_score=review.risk_score,
        decided_at=utc_now(),
        **scored,
    )
    return Outcome(rejection, True, usage_changed=True, reviews_changed=True)

"""The decision for one request, given its wallet's state: approve and hold, hold for
review, or reject; and an analyst's decision on a held one.

Pure. Steps in order: spending limits (``streams.limits``), the fraud decision
(``streams.decision``: decline, review or approve), then the balance reservation. An
approval or a review charges the limit counters and holds the funds; a rejection changes
nothing. What was decided is returned as a ``Decided`` (kept under the transaction's own
key). A review's outcome comes later (``decide_review``): approve sends the held
transaction to the ledger; decline releases the hold and gives the limit charge back.
Recognising a replay is the caller's (a ``Decided`` exists for the id).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.fast_records import trusted
from domain.money import ZERO
from domain.records import (
    PostTransaction,
    ReviewDecided,
    ReviewRequested,
    TransactionFacts,
    TransactionRejected,
    TransactionRequested,
)
from domain.transactions import RejectReason, TransactionType
from streams.decided import Decided, Status
from streams.decision import APPROVED, Assessment, Decision
from streams.limits import Limit, LimitUsage
from streams.wallet_state import WalletState

Command = PostTransaction | TransactionRejected | ReviewRequested
_POST_FIELDS = set(PostTransaction.model_fields)
#: Reviews one wallet may have open; past it a review-worthy request is declined.
PENDING_REVIEWS_MAX = 64


@dataclass(frozen=True)
class Outcome:
    command: Command
    decided: Decided
    #: The wallet's balance, counters or open reviews changed (write its value).
    wallet_changed: bool


@dataclass
class Timeouts:
    """How long a review may wait, and how long the ledger has for a command."""

    review: timedelta = timedelta(minutes=5)
    command: timedelta = timedelta(minutes=10)


def _reject(
    facts: TransactionFacts,
    reason: RejectReason,
    message: str,
    assessment: Assessment | None,
    now: datetime,
) -> TransactionRejected:
    return TransactionRejected(
        **facts.facts(),
        reason_code=reason.value,
        reason_message=message[:1000],
        risk_score=None if assessment is None else assessment.risk_score,
        decided_at=now,
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


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def screen(
    request: TransactionRequested,
    state: WalletState,
    limits: list[Limit] | None = None,
    usage: LimitUsage | None = None,
    assessment: Assessment = APPROVED,
    reviews_open: int = 0,
    timeouts: Timeouts | None = None,
    now: datetime | None = None,
    wallet_status: str = "ACTIVE",
    payment_method_problem: str | None = None,
) -> Outcome:
    """``limits`` are those that apply to this request (``streams.limits.applicable``);
    ``state`` and ``usage`` are changed in place when the request is approved or held.
    A debit of a wallet that is not ACTIVE (``wallet_status`` of the keyed wallet, which
    is the source whenever there is one) is refused first: ``WALLET_FROZEN`` when frozen."""
    limits = limits or []
    usage = usage if usage is not None else LimitUsage()
    timeouts = timeouts or Timeouts()
    now = now or datetime.now(UTC)
    if wallet_status != "ACTIVE" and request.source_wallet_id is not None:
        reason = (
            RejectReason.WALLET_FROZEN
            if wallet_status == "FROZEN"
            else RejectReason.WALLET_NOT_ACTIVE
        )
        message = f"wallet {request.source_wallet_id} is {wallet_status}: it may not be debited"
        rejected = _reject(request, reason, message, assessment, now)
        return Outcome(rejected, Decided(Status.REJECTED), False)
    if payment_method_problem is not None:
        reason = RejectReason.PAYMENT_METHOD_INVALID
        rejected = _reject(request, reason, payment_method_problem, assessment, now)
        return Outcome(rejected, Decided(Status.REJECTED), False)
    at, amount = request.requested_at, request.amount
    breached = usage.breached(limits, amount, at)
    if breached is not None:
        used_amount, used_count = usage.used(breached, at)
        message = (
            f"{breached.name}: {amount} {request.currency_code} would make "
            f"{used_amount + amount} of {breached.max_amount} and {used_count + 1} of "
            f"{breached.max_count} transactions this period"
        )
        rejected = _reject(request, RejectReason.LIMIT_EXCEEDED, message, assessment, now)
        return Outcome(rejected, Decided(Status.REJECTED), False)
    decision = assessment.decision
    if decision is Decision.REVIEW and reviews_open >= PENDING_REVIEWS_MAX:
        decision = Decision.DECLINE  # never an unbounded review queue
    if decision is Decision.DECLINE:
        message = _fraud_message(assessment)
        rejected = _reject(request, RejectReason.FRAUD_DECLINED, message, assessment, now)
        return Outcome(rejected, Decided(Status.REJECTED), False)
    if request.transaction_type is TransactionType.DEPOSIT:
        # Money from outside: nothing to hold (nor to review); it counts once posted.
        return _approve(request, limits, usage, assessment, timeouts, now, held=False)
    if not state.can_reserve(request.total_amount):
        message = (
            f"available {state.available} {request.currency_code} is less "
            f"than {request.total_amount}"
        )
        rejected = _reject(request, RejectReason.INSUFFICIENT_FUNDS, message, assessment, now)
        return Outcome(rejected, Decided(Status.REJECTED), False)
    if decision is Decision.REVIEW:
        state.reserve(request.total_amount)
        charge = usage.charge(limits, amount, at)
        deadline = now + timeouts.review
        held = ReviewRequested(
            **request.facts(),
            risk_score=assessment.risk_score,
            decided_at=now,
            review_deadline=deadline,
            **_scored(assessment),
        )
        review = {
            "request": request.model_dump(mode="json"),
            "risk_score": str(assessment.risk_score),
            "scored_by": assessment.scored_by,
            "shadow_scores": {name: str(s) for name, s in assessment.shadow_scores.items()},
        }
        decided = Decided(Status.REVIEW, request.total_amount, charge, _ms(deadline), review=review)
        return Outcome(held, decided, True)
    return reserve_and_approve(request, state, limits, usage, assessment, timeouts, now)


def _approve(
    request: TransactionRequested,
    limits: list[Limit],
    usage: LimitUsage,
    assessment: Assessment,
    timeouts: Timeouts,
    now: datetime,
    *,
    held: bool,
) -> Outcome:
    expires_at = now + timeouts.command
    # The facts come from a validated request and the rest is ours: built without
    # validating again (pydantic's validation, even model_construct's walk over the
    # defaults, was the largest cost of a decision on the hot path).
    values = request.facts()
    values.update(
        schema_version=1,
        event_id=uuid.uuid4(),
        kind="PostTransaction",
        risk_score=assessment.risk_score,
        decided_at=now,
        expires_at=expires_at,
        scored_by=assessment.scored_by,
        shadow_scores=assessment.shadow_scores,
    )
    command = trusted(PostTransaction, values, _POST_FIELDS)
    return Outcome(
        command,
        Decided(
            Status.SENT,
            request.total_amount if held else ZERO,
            usage.charge(limits, request.amount, request.requested_at),
            _ms(expires_at),
        ),
        bool(limits) or held,
    )


def reserve_and_approve(
    request: TransactionRequested,
    state: WalletState,
    limits: list[Limit],
    usage: LimitUsage,
    assessment: Assessment,
    timeouts: Timeouts,
    now: datetime,
) -> Outcome:
    """``screen``'s approval of a request that moves the wallet's money: hold, then send."""
    state.reserve(request.total_amount)
    return _approve(request, limits, usage, assessment, timeouts, now, held=True)


def decide_review(
    decided_by_analyst: ReviewDecided,
    decided: Decided,
    state: WalletState,
    usage: LimitUsage,
    timeouts: Timeouts,
    now: datetime,
) -> Command:
    """Apply an analyst's decision (or the timeout's decline) to a transaction held for
    review (``decided.status`` is REVIEW); ``decided``, ``state`` and ``usage`` change in
    place. Approve: the command goes to the ledger with a new deadline. Decline: the hold
    is released and the limit charge given back."""
    review = decided.review or {}
    request = TransactionRequested.model_validate(review["request"])
    scored = {
        "scored_by": review.get("scored_by"),
        "shadow_scores": review.get("shadow_scores") or {},
    }
    risk_score = review["risk_score"]
    decided.review = None
    if decided_by_analyst.decision == "APPROVE":
        expires_at = now + timeouts.command
        decided.status, decided.deadline_ms = Status.SENT, _ms(expires_at)
        return PostTransaction(
            **request.facts(),
            risk_score=risk_score,
            decided_at=now,
            expires_at=expires_at,
            **scored,
        )
    note = f": {decided_by_analyst.note}" if decided_by_analyst.note else ""
    message = f"declined on review by {decided_by_analyst.decided_by}{note}"
    return decline_held(request, decided, state, usage, message, risk_score, scored, now)


def decline_held(
    request: TransactionRequested,
    decided: Decided,
    state: WalletState,
    usage: LimitUsage,
    message: str,
    risk_score: object,
    scored: dict[str, object],
    now: datetime,
) -> TransactionRejected:
    """Release a held review's funds and give its limit charge back: FRAUD_DECLINED."""
    state.release(decided.held)
    usage.give_back(decided.charge)
    decided.status, decided.held, decided.charge, decided.deadline_ms = (
        Status.REJECTED,
        ZERO,
        None,
        0,
    )
    return TransactionRejected(
        **request.facts(),
        reason_code=RejectReason.FRAUD_DECLINED.value,
        reason_message=message[:1000],
        risk_score=risk_score,
        decided_at=now,
        **scored,
    )

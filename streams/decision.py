"""Fraud features from the wallet's own history, the score, and the policy's decision.

Pure apart from the scorer it is handed (``models.protocol.Scorer``). The features come
from a small bounded per-wallet state (a faust table value): recent amounts, recent request
times and recent counterparties. The score (in [0, 1]) becomes ``risk_score`` on the
records, scaled to 0-100 with two decimals (``transactions.risk_score`` is DECIMAL(5,2)).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from domain.records import TransactionRequested
from models.expression import Env
from models.policy import Action, FraudPolicy
from models.protocol import Features, Scorer

AMOUNTS_MAX = 50
TIMES_MAX = 64
COUNTERPARTIES_MAX = 64
HOUR_S = 3600
#: What ``features`` computes: the names a policy's rules may read besides the request's.
FEATURE_NAMES = (
    "log_amount",
    "amount_ratio",
    "history_n",
    "count_1h",
    "new_counterparty",
    "hour",
)


@dataclass
class FeatureState:
    amounts: deque[Decimal] = field(default_factory=lambda: deque(maxlen=AMOUNTS_MAX))
    times_s: deque[float] = field(default_factory=lambda: deque(maxlen=TIMES_MAX))
    counterparties: deque[str] = field(default_factory=lambda: deque(maxlen=COUNTERPARTIES_MAX))

    def to_json(self) -> dict[str, object]:
        return {
            "amounts": [str(a) for a in self.amounts],
            "times_s": list(self.times_s),
            "counterparties": list(self.counterparties),
        }

    @classmethod
    def from_json(cls, data: dict | None) -> FeatureState:
        if not data:
            return cls()
        return cls(
            amounts=deque((Decimal(a) for a in data["amounts"]), maxlen=AMOUNTS_MAX),
            times_s=deque((float(t) for t in data["times_s"]), maxlen=TIMES_MAX),
            counterparties=deque(data["counterparties"], maxlen=COUNTERPARTIES_MAX),
        )


def features(request: TransactionRequested, state: FeatureState) -> Features:
    """Amount against the wallet's spending history, requests in the last hour, a new counterparty,
    the hour of day (UTC). Floats: features feed models, money stays Decimal elsewhere."""
    now_s = request.requested_at.timestamp()
    amount = float(request.amount)
    mean = float(sum(state.amounts) / len(state.amounts)) if state.amounts else amount
    counterparty = request.destination_wallet_id if request.source_wallet_id else None
    return {
        "log_amount": math.log1p(amount),
        "amount_ratio": amount / mean if mean > 0 else 1.0,
        "history_n": float(len(state.amounts)),
        "count_1h": float(sum(1 for t in state.times_s if now_s - HOUR_S <= t <= now_s)),
        "new_counterparty": float(
            counterparty is not None and str(counterparty) not in state.counterparties
        ),
        "hour": float(request.requested_at.hour),
    }


def observe(request: TransactionRequested, state: FeatureState) -> None:
    """Remember an approved (or held for review) request in the wallet's history: every
    request's time; a spend's amount and counterparty (a deposit is no spending habit)."""
    state.times_s.append(request.requested_at.timestamp())
    if request.source_wallet_id is None:
        return
    state.amounts.append(request.amount)
    if request.destination_wallet_id:
        counterparty = str(request.destination_wallet_id)
        if counterparty not in state.counterparties:
            state.counterparties.append(counterparty)


class Decision(StrEnum):
    APPROVE = "APPROVE"
    REVIEW = "REVIEW"
    DECLINE = "DECLINE"


@dataclass(frozen=True)
class Policy:
    """Thresholds on the score in [0, 1]: review from ``review_at``, decline from
    ``decline_at``."""

    review_at: float = 0.6
    decline_at: float = 0.85

    def decide(self, score: float) -> Decision:
        if score >= self.decline_at:
            return Decision.DECLINE
        if score >= self.review_at:
            return Decision.REVIEW
        return Decision.APPROVE


@dataclass(frozen=True)
class Assessment:
    score: float
    decision: Decision
    rule: str | None = None  # the policy rule that decided, None: the thresholds did
    policy_version: int = 0
    failed_rules: tuple[str, ...] = ()  # rules whose arithmetic failed on this request
    #: What the score was computed from, kept until the transaction's label arrives.
    features: Features = field(default_factory=dict, compare=False, repr=False)

    @property
    def risk_score(self) -> Decimal:
        """0-100 with two decimals, for DECIMAL(5,2)."""
        bounded = min(max(self.score, 0.0), 1.0)
        return (Decimal(str(bounded)) * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


APPROVED = Assessment(0.0, Decision.APPROVE)


def assess(
    request: TransactionRequested,
    state: FeatureState,
    scorer: Scorer,
    policy: Policy | FraudPolicy,
) -> Assessment:
    """Score first, then learn from the same features (test-then-train); then the policy:
    an analyst's ``FraudPolicy`` (rules, then thresholds) or plain thresholds."""
    x = features(request, state)
    score = scorer.score_one(x)
    if not math.isfinite(score):
        score = 1.0  # a broken model must not wave money through
    scorer.learn_one(x)
    if isinstance(policy, Policy):
        return Assessment(score, policy.decide(score), features=x)
    values = None
    if policy.names:
        risk_score = Assessment(score, Decision.APPROVE).risk_score
        values = policy_values(request, x, risk_score, policy.names)
    verdict = policy.decide(score, values)
    return Assessment(
        score,
        DECISIONS[verdict.action],
        verdict.rule,
        policy.version,
        verdict.failed_rules,
        features=x,
    )


DECISIONS = {
    Action.APPROVE: Decision.APPROVE,
    Action.REVIEW: Decision.REVIEW,
    Action.DECLINE: Decision.DECLINE,
}


def policy_values(
    request: TransactionRequested, x: Features, risk_score: Decimal, names: frozenset[str]
) -> Env:
    """The values of the names a policy's rules read (only those: each costs a Decimal).
    Features are floats; a rule sees their shortest decimal form (0.1, not 0.1000…0555)."""
    values: dict[str, Decimal | str] = {}
    for name in names:
        if name == "risk_score":
            values[name] = risk_score
        elif name == "amount":
            values[name] = request.amount
        elif name == "transaction_type":
            values[name] = request.transaction_type.value
        elif name == "currency_code":
            values[name] = request.currency_code
        elif name == "channel":
            values[name] = str((request.metadata or {}).get("channel", ""))
        else:
            values[name] = Decimal(repr(x[name]))
    return values

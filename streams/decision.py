"""The policy's decision on one request, given its features and its scores.

Pure. The features are ``models.features``' (computed by ``streams/features.py`` from the
wallet's and the terminal's state), the scores come from the models in force
(``streams/models_watch.py``: the registry's champion and challengers, or the online
scorer). The deciding score (in [0, 1]) becomes ``risk_score`` on the records, scaled to
0-100 with two decimals (``transactions.risk_score`` is DECIMAL(5,2)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from domain.records import TransactionRequested
from models.expression import Env
from models.features import FEATURE_NAMES
from models.policy import Action, FraudPolicy
from models.protocol import Features
from streams.models_watch import Scores, to_risk_score

__all__ = [
    "FEATURE_NAMES",
    "APPROVED",
    "Assessment",
    "Decision",
    "Policy",
    "assess",
    "policy_values",
]


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
    #: The model whose score decided ("<name> v<N>"), None before any scored.
    scored_by: str | None = None
    #: The challengers' scores of the same features (0-100), by model: never decisive.
    shadow_scores: dict[str, Decimal] = field(default_factory=dict, compare=False)

    @property
    def risk_score(self) -> Decimal:
        """0-100 with two decimals, for DECIMAL(5,2)."""
        return to_risk_score(self.score)


APPROVED = Assessment(0.0, Decision.APPROVE)


def assess(
    request: TransactionRequested,
    x: Features,
    scores: Scores,
    policy: Policy | FraudPolicy,
) -> Assessment:
    """The policy on the deciding score: an analyst's ``FraudPolicy`` (rules over the
    features and the request, then thresholds) or plain thresholds."""
    score = scores.score
    named = {"scored_by": scores.scored_by, "shadow_scores": scores.shadow_scores}
    if isinstance(policy, Policy):
        return Assessment(score, policy.decide(score), features=x, **named)
    if policy.version == 0 and not policy.rules:
        # The stream's default thresholds, not an analyst's file: the deciding model's own
        # thresholds (chosen on its validation scores) replace them, and the live review
        # budget bounds the review share of a model that has none (the online scorers).
        review_at, decline_at = scores.thresholds or (policy.review_at, policy.decline_at)
        review_at = max(review_at, scores.review_floor)
        decision = (
            Decision.DECLINE
            if score >= decline_at
            else Decision.REVIEW
            if score >= review_at
            else Decision.APPROVE
        )
        return Assessment(score, decision, None, 0, features=x, **named)
    values = None
    if policy.names:
        values = policy_values(request, x, to_risk_score(score), policy.names)
    verdict = policy.decide(score, values)
    return Assessment(
        score,
        DECISIONS[verdict.action],
        verdict.rule,
        policy.version,
        verdict.failed_rules,
        features=x,
        **named,
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

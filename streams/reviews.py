"""Transactions held for an analyst's review, per wallet (a faust table value).

Pure. A reviewed request keeps its reservation and its limit charge while it waits; the
analyst's decision (or the timeout, published by the API as a DECLINE) arrives on
``reviews.decisions`` keyed by the wallet and is applied once: the first decision wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain.records import TransactionRequested

#: Reviews one wallet may have open; past it a review-worthy request is declined.
PENDING_REVIEWS_MAX = 64


@dataclass(frozen=True)
class PendingReview:
    request: TransactionRequested
    risk_score: Decimal
    deadline: datetime
    #: The model that scored it and the challengers' scores, carried to the decision.
    scored_by: str | None = None
    shadow_scores: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class PendingReviews:
    items: dict[str, PendingReview] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        return len(self.items) >= PENDING_REVIEWS_MAX

    def hold(self, review: PendingReview) -> None:
        self.items[str(review.request.transaction_id)] = review

    def take(self, transaction_id: str) -> PendingReview | None:
        """The pending review, removed; None when it was decided already (or never held)."""
        return self.items.pop(transaction_id, None)

    def to_json(self) -> dict[str, object]:
        return {
            t: {
                "request": r.request.model_dump(mode="json"),
                "risk_score": str(r.risk_score),
                "deadline": r.deadline.isoformat(),
                "scored_by": r.scored_by,
                "shadow_scores": {name: str(score) for name, score in r.shadow_scores.items()},
            }
            for t, r in self.items.items()
        }

    @classmethod
    def from_json(cls, data: dict | None) -> PendingReviews:
        if not data:
            return cls()
        return cls(
            {
                t: PendingReview(
                    TransactionRequested.model_validate(r["request"]),
                    Decimal(r["risk_score"]),
                    datetime.fromisoformat(r["deadline"]),
                    r.get("scored_by"),  # absent on reviews held before models were named
                    {name: Decimal(v) for name, v in (r.get("shadow_scores") or {}).items()},
                )
                for t, r in data.items()
            }
        )

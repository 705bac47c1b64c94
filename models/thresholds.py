"""Thresholds an analyst team can live with, chosen on a model's validation scores.

Two targets, not two numbers picked by eye: a **decline precision** (of the transactions
declined, at least this share must be fraud: a declined good customer is lost business)
and a **review budget** (at most this share of all traffic held for review: the team's
capacity). On a validation period's scores and labels, ``choose_thresholds`` takes the
lowest decline threshold whose declines are precise enough, then the lowest review
threshold whose band below it fits the budget. Lowest, because recall only grows as a
threshold falls; the targets are what bound it.

>>> t = choose_thresholds([0.9, 0.8, 0.7, 0.2, 0.1], [1, 1, 0, 0, 0], review_budget=0.2,
...                       decline_precision=0.9, declines_min=1)
>>> (t.decline_at, t.review_at)
(0.8, 0.7)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.exceptions import DatasetError

DEFAULT_REVIEW_BUDGET = 0.02
DEFAULT_DECLINE_PRECISION = 0.9
#: A decline threshold must rest on at least this many validation frauds above it: a
#: precision of 1/1 says nothing.
DECLINES_MIN = 5
#: Above every score in [0, 1]: nothing is declined (or reviewed) by the score.
NEVER = 1.0 + 1e-9


@dataclass(frozen=True)
class Thresholds:
    """Cuts on the score in [0, 1], and what they did on the validation scores."""

    review_at: float
    decline_at: float
    review_budget: float
    decline_precision_target: float
    #: On the validation period:
    transactions: int
    review_rate: float  # share of all transactions held for review
    decline_rate: float
    decline_precision: float  # share of the declined that were fraud (nan: none declined)
    fraud_count_caught_share: float  # frauds declined or held
    legit_decline_rate: float
    legit_review_rate: float

    def as_json(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and np.isnan(v) else v)
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Thresholds:
        return cls(**{k: (float("nan") if v is None else v) for k, v in data.items()})

    def describe(self) -> str:
        return (
            f"thresholds for a review budget of {self.review_budget:.1%} and a decline "
            f"precision of {self.decline_precision_target:.0%}: review from "
            f"{self.review_at * 100:.2f}, decline from {self.decline_at * 100:.2f} (risk score); "
            f"on {self.transactions:,} validation transactions: {self.review_rate:.2%} held, "
            f"{self.decline_rate:.2%} declined (precision {self.decline_precision:.0%}), "
            f"{self.fraud_count_caught_share:.0%} of frauds declined or held, "
            f"{self.legit_decline_rate:.3%} of legitimate declined"
        )


def choose_thresholds(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    review_budget: float = DEFAULT_REVIEW_BUDGET,
    decline_precision: float = DEFAULT_DECLINE_PRECISION,
    declines_min: int = DECLINES_MIN,
) -> Thresholds:
    """The lowest decline threshold with at least ``declines_min`` frauds above it and a
    precision of at least ``decline_precision`` over all above it; then the lowest review
    threshold with at most ``review_budget`` of all transactions from it to the decline
    threshold. Thresholds sit on validation scores (a cut between two equal scores is no
    cut)."""
    score = np.asarray(scores, dtype=float)
    label = np.asarray(labels, dtype=bool)
    if len(score) == 0 or len(score) != len(label):
        raise DatasetError("thresholds need as many labels as scores, and at least one")
    if not 0 <= review_budget <= 1 or not 0 < decline_precision <= 1:
        raise DatasetError("the review budget is a share from 0 to 1, the precision above 0")
    order = np.argsort(-score, kind="stable")
    ranked, fraud = score[order], label[order]
    frauds_above = np.cumsum(fraud)  # frauds among the top k + 1
    count_above = np.arange(1, len(ranked) + 1)
    # k is a cut only where the next score is lower (ties go together)
    cut = np.append(ranked[1:] < ranked[:-1], True)
    precise = (
        cut & (frauds_above >= declines_min) & (frauds_above >= decline_precision * count_above)
    )
    declined = int(np.flatnonzero(precise)[-1]) + 1 if precise.any() else 0
    decline_at = float(ranked[declined - 1]) if declined else NEVER
    budget = int(np.floor(review_budget * len(ranked)))
    fits = cut & (count_above - declined <= budget) & (count_above >= declined)
    held_to = int(np.flatnonzero(fits)[-1]) + 1 if fits.any() else declined
    review_at = float(ranked[held_to - 1]) if held_to > declined else decline_at
    return _measure(score, label, review_at, decline_at, review_budget, decline_precision)


def _measure(
    score: np.ndarray,
    label: np.ndarray,
    review_at: float,
    decline_at: float,
    review_budget: float,
    decline_precision: float,
) -> Thresholds:
    declined = score >= decline_at
    held = (score >= review_at) & ~declined
    legit = ~label
    n = len(score)
    return Thresholds(
        review_at=review_at,
        decline_at=decline_at,
        review_budget=review_budget,
        decline_precision_target=decline_precision,
        transactions=n,
        review_rate=float(held.sum() / n),
        decline_rate=float(declined.sum() / n),
        decline_precision=float(label[declined].mean()) if declined.any() else float("nan"),
        fraud_count_caught_share=(
            float((declined | held)[label].mean()) if label.any() else float("nan")
        ),
        legit_decline_rate=float(declined[legit].mean()) if legit.any() else 0.0,
        legit_review_rate=float(held[legit].mean()) if legit.any() else 0.0,
    )


class ReviewBudget:
    """The live guard on the review share: the score above which at most ``budget`` of
    the last ``window`` scores lie. A model without thresholds of its own (the online
    scorers, before or without labels) reviews only above it, so a scorer whose scores
    drift up cannot hold more of the traffic than the team can look at.

    Bounded: ``window`` scores; the floor is recomputed every ``every`` scores (a sort of
    ``window`` floats), and is ``NEVER``-free: until ``warmup`` scores were seen it is 0.

    >>> budget = ReviewBudget(0.1, window=100, every=10, warmup=10)
    >>> for i in range(100):
    ...     budget.observe(i / 100)
    >>> budget.floor > 0.89 and budget.floor <= 0.9
    True
    """

    def __init__(
        self, budget: float, window: int = 5_000, every: int = 100, warmup: int = 200
    ) -> None:
        if not 0 <= budget <= 1 or window < 1 or every < 1:
            raise ValueError("a budget from 0 to 1, a window and an interval of at least 1")
        self.budget = budget
        self.window = window
        self.every = every
        self.warmup = warmup
        self._scores: deque[float] = deque(maxlen=window)
        self._since = 0
        self.floor = 0.0

    def observe(self, score: float) -> None:
        self._scores.append(score)
        self._since += 1
        if self._since >= self.every and len(self._scores) >= self.warmup:
            self._since = 0
            ranked = sorted(self._scores, reverse=True)
            allowed = int(self.budget * len(ranked))
            # Strictly above the first score past the budget: ties there are not reviewed.
            self.floor = math.nextafter(ranked[allowed], math.inf) if allowed < len(ranked) else 0.0

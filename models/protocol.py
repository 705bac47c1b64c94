"""The one face every scorer shows: ``learn_one`` and ``score_one`` (higher = riskier).

After river: a scorer sees one transaction's features at a time, as a flat dict of numbers.
Online models learn from each labelled example as it arrives (labels come days late);
batch models are trained offline and wrapped to the same face, where ``learn_one`` may be a
no-op. Scores are in [0, 1] so one policy's thresholds fit every model.

>>> class Constant:
...     def learn_one(self, x, y=None): pass
...     def score_one(self, x): return 0.5
>>> isinstance(Constant(), Scorer)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

Features = dict[str, float]


@runtime_checkable
class Scorer(Protocol):
    def learn_one(self, x: Features, y: bool | None = None) -> None:
        """Learn from one example; ``y`` is the fraud label, or None for unsupervised."""

    def score_one(self, x: Features) -> float:
        """The risk of one transaction, in [0, 1]: higher is riskier."""

"""A simple first scorer: a few rules plus river's HalfSpaceTrees on scaled features.

Good enough to exercise the decision step end to end; a later model replaces it behind the
same face (``models.protocol.Scorer``). The rules carry the decision; the trees add a
small anomaly bonus that grows as a wallet behaves unlike the others seen so far. It reads
``models.features``' names (the stream's features): the stream falls back on it when the
model registry has no champion.

>>> scorer = RulesAndTrees(seed=1)
>>> x = {"customer_amount_ratio_30d": 1.0, "customer_nb_1h": 1.0, "new_terminal": 0.0,
...      "hour": 12.0, "customer_nb_30d": 10.0, "log_amount": 3.0}
>>> 0.0 <= scorer.score_one(x) <= 1.0
True
>>> scorer.learn_one(x)
>>> scorer.score_one({**x, "customer_amount_ratio_30d": 60.0, "new_terminal": 1.0}) >= 0.9
True
"""

from __future__ import annotations

from river import anomaly, preprocessing

from models.protocol import Features

#: The trees' share of the score: at most this much on top of the rules.
TREES_WEIGHT = 0.1
#: Rules need this many earlier transactions in 30 days before an amount can look unusual.
HISTORY_MIN = 3
#: Earlier transactions within the hour that make a burst.
BURST_MIN = 30


def rules_score(x: Features) -> float:
    """Points for what analysts look at first; at most 1. The engine's counts include the
    transaction itself, hence the ``+ 1``s."""
    score = 0.0
    seasoned = x.get("customer_nb_30d", 1.0) >= HISTORY_MIN + 1
    ratio = x.get("customer_amount_ratio_30d", 1.0)
    if seasoned and ratio >= 10:
        score += 0.45
    if seasoned and ratio >= 50:
        score += 0.3
    if x.get("new_terminal", 0.0) >= 1 and seasoned and ratio >= 3:
        score += 0.15
    if x.get("customer_nb_1h", 1.0) >= BURST_MIN + 1:
        score += 0.3
    if x.get("hour", 12.0) < 5:
        score += 0.03
    return min(score, 1.0)


class RulesAndTrees:
    """Rules plus ``anomaly.HalfSpaceTrees`` on min-max scaled features (bounded memory:
    the trees and the scaler's per-feature min and max)."""

    def __init__(
        self, seed: int = 42, n_trees: int = 5, height: int = 5, window_size: int = 250
    ) -> None:
        self._scaler = preprocessing.MinMaxScaler()
        self._trees = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self._last: tuple[Features | None, Features] = (None, {})

    def learn_one(self, x: Features, y: bool | None = None) -> None:
        self._scaler.learn_one(x)
        # Test-then-train scores x first: reuse its scaled form (scaled before this update,
        # as river's pipelines do when they score and then learn).
        scaled = self._last[1] if self._last[0] is x else self._scaler.transform_one(x)
        self._trees.learn_one(scaled)

    def score_one(self, x: Features) -> float:
        scaled = self._scaler.transform_one(x)
        self._last = (x, scaled)
        anomaly_score = self._trees.score_one(scaled)
        return min(1.0, rules_score(x) + TREES_WEIGHT * min(max(anomaly_score, 0.0), 1.0))

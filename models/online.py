"""Online models (river) behind the Scorer protocol, and prequential evaluation.

``OnlineClassifier`` learns from each label as it arrives (days after the transaction);
``AnomalyScorer`` needs no labels at all (river's HalfSpaceTrees over scaled features).
Prequential evaluation is test-then-train: every event is scored first, and learnt from
only once its label would really have arrived.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping

from river import anomaly, compose, linear_model, optim, preprocessing

from models.features import SECONDS_PER_DAY

#: HalfSpaceTrees expects features in [0, 1]; these bound the heavy-tailed ones first.
LOG_SCALED = ("amount", "customer_amount_ratio_30d", "customer_max_ratio_30d")


class OnlineClassifier:
    """Logistic regression learnt one labelled example at a time.

    >>> model = OnlineClassifier()
    >>> for _ in range(200):
    ...     model.learn_one({"amount": 500.0}, True)
    ...     model.learn_one({"amount": 5.0}, False)
    >>> model.score_one({"amount": 500.0}) > model.score_one({"amount": 5.0})
    True
    """

    def __init__(self, learning_rate: float = 0.05) -> None:
        self.model = compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate)),
        )

    def learn_one(self, x: Mapping[str, float], y: bool | None = None) -> None:
        if y is not None:
            self.model.learn_one(dict(x), bool(y))

    def score_one(self, x: Mapping[str, float]) -> float:
        return float(self.model.predict_proba_one(dict(x)).get(True, 0.0))


class AnomalyScorer:
    """HalfSpaceTrees: how unusual an event is, learnt without labels (``y`` is ignored)."""

    def __init__(
        self, seed: int = 42, n_trees: int = 25, height: int = 8, window_size: int = 250
    ) -> None:
        self.scaler = preprocessing.MinMaxScaler()
        self.model = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )

    def _scaled(self, x: Mapping[str, float]) -> dict[str, float]:
        prepared = {k: (math.log1p(max(v, 0.0)) if k in LOG_SCALED else v) for k, v in x.items()}
        self.scaler.learn_one(prepared)
        return self.scaler.transform_one(prepared)

    def learn_one(self, x: Mapping[str, float], y: bool | None = None) -> None:
        self.model.learn_one(self._scaled(x))

    def score_one(self, x: Mapping[str, float]) -> float:
        return float(min(1.0, max(0.0, self.model.score_one(self._scaled(x)))))


def prequential(
    model: object, stream: Iterable[tuple[int, Mapping[str, float], bool]], label_delay_days: int
) -> Iterator[float]:
    """Score each (time_s, features, label) first, learn from it when its label arrives."""
    delay_s = label_delay_days * SECONDS_PER_DAY
    waiting: deque[tuple[int, Mapping[str, float], bool]] = deque()
    unsupervised = isinstance(model, AnomalyScorer)
    for time_s, x, label in stream:
        while waiting and waiting[0][0] <= time_s:
            _, old_x, old_label = waiting.popleft()
            model.learn_one(old_x, old_label)  # type: ignore[attr-defined]
        yield model.score_one(x)  # type: ignore[attr-defined]
        if unsupervised:
            model.learn_one(x)  # type: ignore[attr-defined]
        else:
            waiting.append((time_s + delay_s, x, label))

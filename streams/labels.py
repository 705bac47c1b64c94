"""Recently scored transactions per wallet, and learning from their delayed labels.

Pure. A label (``FraudLabelled`` on ``fraud.labels``) arrives days after its transaction
was scored; by then the wallet's features have moved on, so the stream keeps the features
it scored each transaction with (``ScoredTransactions``, a faust table value per wallet, the
last ``SCORED_MAX``) and the online classifier learns from exactly those: what the model
would have seen, never what came after (no leakage from the future).

A label is applied once: a repeat (a redelivery after a crash) is recognised and ignored.
A label for a transaction the wallet does not hold raises ``UnknownLabelledTransaction``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from models.protocol import Features, Scorer
from streams.exceptions import UnknownLabelledTransaction

#: Scored transactions remembered per wallet, waiting for their label. A label days late
#: still finds its transaction unless the wallet made this many since.
SCORED_MAX = 64
#: Significant digits kept of each feature: the table value is rewritten per request.
FEATURE_DIGITS = 6


@dataclass
class ScoredTransactions:
    #: transaction id -> (the features it was scored with, its label once known)
    items: OrderedDict[str, tuple[Features, bool | None]] = field(default_factory=OrderedDict)

    def remember(self, transaction_id: str, features: Features) -> None:
        """Keep a scored transaction; the oldest goes past ``SCORED_MAX``."""
        if transaction_id in self.items:
            return  # scored once: a replay keeps the first features
        self.items[transaction_id] = (
            {k: float(f"{v:.{FEATURE_DIGITS}g}") for k, v in features.items()},
            None,
        )
        while len(self.items) > SCORED_MAX:
            self.items.popitem(last=False)

    def label(self, transaction_id: str, is_fraud: bool) -> Features | None:
        """Record the label: the features to learn from, or None if it was labelled already."""
        known = self.items.get(transaction_id)
        if known is None:
            raise UnknownLabelledTransaction(
                f"transaction {transaction_id} is not among the last {SCORED_MAX} scored for "
                "this wallet (unknown id, keyed by another wallet, or scored too long ago)"
            )
        features, label = known
        if label is not None:
            return None
        self.items[transaction_id] = (features, is_fraud)
        return features

    def to_json(self) -> list[list[object]]:
        return [[t, x, y] for t, (x, y) in self.items.items()]

    @classmethod
    def from_json(cls, data: list | None) -> ScoredTransactions:
        items: OrderedDict[str, tuple[Features, bool | None]] = OrderedDict()
        for transaction_id, features, label in (data or ())[-SCORED_MAX:]:
            items[transaction_id] = (dict(features), label)
        return cls(items)


@dataclass
class LabelLearning:
    """A model that learns from delayed labels, and how it did on them before learning
    (prequential: each label is first a test of the model, then a lesson)."""

    model: Scorer
    labels: int = 0
    frauds: int = 0
    #: Sum of the model's scores on frauds and on legitimate ones, before learning each.
    score_sum_fraud: float = 0.0
    score_sum_legit: float = 0.0

    def learn(self, features: Features, is_fraud: bool) -> float:
        """Score the features as the model stands, then learn the label; the score."""
        score = self.model.score_one(features)
        self.labels += 1
        if is_fraud:
            self.frauds += 1
            self.score_sum_fraud += score
        else:
            self.score_sum_legit += score
        self.model.learn_one(features, is_fraud)
        return score

    def summary(self) -> str:
        legit = self.labels - self.frauds
        fraud_mean = self.score_sum_fraud / self.frauds if self.frauds else float("nan")
        legit_mean = self.score_sum_legit / legit if legit else float("nan")
        return (
            f"{self.labels} labels ({self.frauds} fraud); mean score before learning: "
            f"fraud {fraud_mean:.3f}, legitimate {legit_mean:.3f}"
        )

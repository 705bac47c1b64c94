"""Learning from delayed fraud labels.

Pure. A label (``FraudLabelled`` on ``wallet.commands``) arrives days after its transaction
was scored; by then the wallet's features have moved on, so the stream keeps the features
it scored each transaction with (in the transaction's own state key, ``streams.decided``)
and the online classifier learns from exactly those: what the model would have seen, never
what came after (no leakage from the future). A label is applied once (``streams.flow``).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.protocol import Features, Scorer


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

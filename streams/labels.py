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


#: ``scored_by`` while the label-trained classifier decides (no champion), and its name in
#: ``shadow_scores`` while a champion decides.
ONLINE_LABELS_NAME = "online labels"
#: Labels the classifier must have learnt before it decides: too few frauds teach nothing.
FRAUDS_MIN = 10
LEGIT_MIN = 100


class OnlineDecider:
    """What decides without a champion: the classifier the labels train (``learning``),
    once it has learnt ``frauds_min`` frauds and ``legit_min`` legitimate labels; before
    that, the unsupervised ``rules`` scorer, which learns from every request (labels go
    to the classifier through ``LabelLearning``, not here).

    >>> from models.online import OnlineClassifier
    >>> from models.simple import RulesAndTrees
    >>> decider = OnlineDecider(RulesAndTrees(seed=1), LabelLearning(OnlineClassifier()))
    >>> decider.name
    'online RulesAndTrees'
    """

    def __init__(
        self,
        rules: Scorer,
        learning: LabelLearning,
        frauds_min: int = FRAUDS_MIN,
        legit_min: int = LEGIT_MIN,
        rules_name: str = "online RulesAndTrees",
    ) -> None:
        self.rules = rules
        self.learning = learning
        self.frauds_min = frauds_min
        self.legit_min = legit_min
        self.rules_name = rules_name

    @property
    def taught(self) -> bool:
        learning = self.learning
        return (
            learning.frauds >= self.frauds_min
            and learning.labels - learning.frauds >= self.legit_min
        )

    @property
    def name(self) -> str:
        return ONLINE_LABELS_NAME if self.taught else self.rules_name

    def score_one(self, x: Features) -> float:
        if self.taught:
            return self.learning.model.score_one(x)
        return self.rules.score_one(x)

    def learn_one(self, x: Features, y: bool | None = None) -> None:
        self.rules.learn_one(x)

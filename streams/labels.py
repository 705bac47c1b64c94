"""Recently scored transactions per wallet, and learning from their delayed labels.

Pure. A label (``FraudLabelled`` on ``fraud.labels``) arrives days after its transaction
was scored; by then the wallet's features have moved on, so the stream keeps the features
it scored each transaction with (``ScoredTransactions``, a faust table value per wallet, the
last ``SCORED_MAX``) and the online classifier learns from exactly those: what the model
would have seen, never what came after (no leakage from the future).

A transaction the stream approved or held for review also keeps its terminal and time:
its fraud label is then counted at that terminal (``streams/features.py``).

A label is applied once: a repeat (a redelivery after a crash) is recognised and ignored.
A label for a transaction the wallet does not hold raises ``UnknownLabelledTransaction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.protocol import Features, Scorer
from streams.exceptions import UnknownLabelledTransaction

#: Scored transactions remembered per wallet, waiting for their label. A label days late
#: still finds its transaction unless the wallet made this many since.
SCORED_MAX = 64
#: Decimals kept of each feature: the table value is rewritten per request, keep it short.
FEATURE_DECIMALS = 6


@dataclass
class ScoredTransactions:
    """The table value itself, a JSON-ready dict, worked on in place: on the hot path a
    request appends one row and nothing is rebuilt (the features' names are kept once).

    ``rows``: ``[transaction id, feature values, label or None, terminal, time_s]``,
    oldest first; terminal and time are None when the transaction did not enter the
    terminal's history (declined)."""

    names: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)

    def remember(
        self,
        transaction_id: str,
        features: Features,
        terminal: str | None = None,
        time_s: int | None = None,
    ) -> None:
        """Keep a scored transaction (and where and when it was counted at a terminal, if
        it was); the oldest goes past ``SCORED_MAX``."""
        names = list(features)
        if names != self.names:  # another model's features: the old rows cannot teach it
            self.names, self.rows = names, []
        elif any(row[0] == transaction_id for row in self.rows):
            return  # scored once: a replay keeps the first features
        values = [round(v, FEATURE_DECIMALS) for v in features.values()]
        self.rows.append([transaction_id, values, None, terminal, time_s])
        del self.rows[:-SCORED_MAX]

    def label(self, transaction_id: str, is_fraud: bool) -> Features | None:
        """Record the label: the features to learn from, or None if it was labelled already."""
        for row in self.rows:
            if row[0] == transaction_id:
                if row[2] is not None:
                    return None
                row[2] = bool(is_fraud)
                return dict(zip(self.names, row[1], strict=True))
        raise UnknownLabelledTransaction(
            f"transaction {transaction_id} is not among the last {SCORED_MAX} scored for "
            "this wallet (unknown id, keyed by another wallet, or scored too long ago)"
        )

    def counted_at(self, transaction_id: str) -> tuple[str, int] | None:
        """The terminal and time a transaction was counted at, None if it was not (or is
        not held: rows from before terminals were kept have no place)."""
        for row in self.rows:
            if row[0] == transaction_id:
                if len(row) < 5 or row[3] is None or row[4] is None:
                    return None
                return row[3], row[4]
        return None

    def __len__(self) -> int:
        return len(self.rows)

    def to_json(self) -> dict[str, list]:
        return {"names": self.names, "rows": self.rows}

    @classmethod
    def from_json(cls, data: dict | None) -> ScoredTransactions:
        if not data:
            return cls()
        # Copies: a memory store (unit tests) hands out the stored lists themselves.
        return cls(list(data["names"]), data["rows"][-SCORED_MAX:])


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

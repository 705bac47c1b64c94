"""Delayed fraud labels in the stream: a transaction keeps the features it was scored with
(``streams.decided``), and the online classifier learns from exactly those."""

from __future__ import annotations

from models.online import OnlineClassifier
from streams.decided import Decided, Status
from streams.labels import LabelLearning


def test_a_transaction_keeps_the_features_it_was_scored_with() -> None:
    decided = Decided(Status.SENT)
    decided.remember_features({"x": 1.23456789, "y": 2.0})
    kept = Decided.decode(decided.encode())
    assert kept.features_for(("x", "y")) == {"x": 1.23456789, "y": 2.0}


def test_features_of_another_engine_are_not_learnt_from() -> None:
    decided = Decided(Status.SENT)
    decided.remember_features({"x": 1.0, "y": 2.0})
    assert decided.features_for(("x", "z")) is None
    assert Decided(Status.REJECTED).features_for(("x",)) is None


def test_the_classifier_learns_from_delayed_labels() -> None:
    learning = LabelLearning(OnlineClassifier())
    fraud, legit = {"amount_ratio": 40.0, "count_1h": 25.0}, {"amount_ratio": 1.0, "count_1h": 1.0}
    for _ in range(150):
        learning.learn(legit, False)
        learning.learn(fraud, True)
    assert (learning.labels, learning.frauds) == (300, 150)
    assert learning.model.score_one(fraud) > 0.8 > 0.2 > learning.model.score_one(legit)
    assert "300 labels (150 fraud)" in learning.summary()

"""Delayed fraud labels in the stream: the features a transaction was scored with are kept
(bounded per wallet), a label is learnt from once with exactly those, and a label for a
transaction the wallet does not hold is refused with a reason (it is dead-lettered)."""

from __future__ import annotations

import json

import pytest

from models.online import OnlineClassifier
from streams.exceptions import StreamsError, UnknownLabelledTransaction
from streams.labels import SCORED_MAX, LabelLearning, ScoredTransactions


def test_a_label_returns_the_features_seen_at_scoring_time_once() -> None:
    scored = ScoredTransactions()
    scored.remember("t1", {"amount_ratio": 1.0 / 3.0, "count_1h": 2.0})
    scored.remember("t1", {"amount_ratio": 99.0, "count_1h": 99.0})  # a replay: first wins
    features = scored.label("t1", True)
    assert features == {"amount_ratio": pytest.approx(1.0 / 3.0, rel=1e-5), "count_1h": 2.0}
    assert scored.label("t1", True) is None  # a redelivered label is not learnt twice
    assert scored.label("t1", False) is None


def test_an_unknown_transaction_is_refused_with_a_reason() -> None:
    scored = ScoredTransactions()
    scored.remember("t1", {"x": 1.0})
    with pytest.raises(UnknownLabelledTransaction) as caught:
        scored.label("t2", True)
    assert isinstance(caught.value, StreamsError)
    assert "t2" in caught.value.message and str(SCORED_MAX) in caught.value.message


def test_memory_is_bounded_and_the_oldest_goes_first() -> None:
    scored = ScoredTransactions()
    for i in range(SCORED_MAX + 10):
        scored.remember(f"t{i}", {"x": float(i)})
    assert len(scored) == SCORED_MAX
    with pytest.raises(UnknownLabelledTransaction):
        scored.label("t0", False)
    assert scored.label(f"t{SCORED_MAX + 9}", False) == {"x": float(SCORED_MAX + 9)}


def test_round_trips_through_json_with_its_labels() -> None:
    scored = ScoredTransactions()
    scored.remember("a", {"x": 1.5})
    scored.remember("b", {"x": 2.5})
    scored.label("a", True)
    again = ScoredTransactions.from_json(json.loads(json.dumps(scored.to_json())))
    assert again.to_json() == scored.to_json()
    assert again.label("a", True) is None and again.label("b", False) == {"x": 2.5}
    assert len(ScoredTransactions.from_json(None)) == 0


def test_features_of_another_model_replace_the_old_rows() -> None:
    scored = ScoredTransactions()
    scored.remember("a", {"x": 1.0})
    scored.remember("b", {"y": 2.0})
    assert scored.label("b", True) == {"y": 2.0}
    with pytest.raises(UnknownLabelledTransaction):
        scored.label("a", True)


def test_the_classifier_learns_from_delayed_labels() -> None:
    learning = LabelLearning(OnlineClassifier())
    fraud, legit = {"amount_ratio": 40.0, "count_1h": 25.0}, {"amount_ratio": 1.0, "count_1h": 1.0}
    for _ in range(150):
        learning.learn(legit, False)
        learning.learn(fraud, True)
    assert (learning.labels, learning.frauds) == (300, 150)
    assert learning.model.score_one(fraud) > 0.8 > 0.2 > learning.model.score_one(legit)
    assert "300 labels (150 fraud)" in learning.summary()

"""What decides live, and from which thresholds: a champion's own thresholds (chosen on its
validation scores) replace the stream's defaults, never an analyst's file; without a
champion the label-trained classifier decides once taught and, before that, the
unsupervised scorer reviews only within the review budget; with one, the classifier
scores in shadow."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from domain.records import TransactionRequested
from models.features import FEATURE_NAMES
from models.online import OnlineClassifier
from models.policy import default_policy, load_policy
from models.registry import Registry
from models.simple import RulesAndTrees
from streams.decision import Decision, assess
from streams.labels import ONLINE_LABELS_NAME, LabelLearning, OnlineDecider
from streams.models_watch import ONLINE_SCORER_NAME, ModelWatcher, Scores
from tests.unit.test_decisions import request as decisions_request
from tests.unit.test_models_watch import NAME, X, forest

DEFAULTS = default_policy(0.6, 0.85)


def request() -> TransactionRequested:
    return decisions_request("10")


def decide(score: float, thresholds=None, floor: float = 0.0, policy=DEFAULTS) -> Decision:  # noqa: ANN001
    scores = Scores(score, "m", {}, thresholds, floor)
    return assess(request(), X, scores, policy).decision


def test_the_models_own_thresholds_replace_the_defaults_not_an_analysts_file() -> None:
    assert decide(0.5) is Decision.APPROVE
    assert decide(0.5, (0.3, 0.45)) is Decision.DECLINE
    assert decide(0.35, (0.3, 0.45)) is Decision.REVIEW
    analysts = load_policy('{"version": 2, "review_threshold": 60, "decline_threshold": 85}', [])
    assert decide(0.5, (0.3, 0.45), policy=analysts) is Decision.APPROVE
    # The budget's floor lifts the review threshold, never the decline one.
    assert decide(0.35, (0.3, 0.45), floor=0.4) is Decision.APPROVE
    assert decide(0.9, None, floor=0.95) is Decision.DECLINE


def test_a_champion_carries_its_thresholds_and_the_classifier_shadows_it(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    metadata = {
        "training_window": {"from": "2026-01-01", "days": 7, "label_delay_days": 7},
        "thresholds": {"review_at": 0.2, "decline_at": 0.7},
    }
    registry.save(NAME, forest(1), metadata)
    models = ModelWatcher(
        registry.root, NAME, RulesAndTrees(seed=1), 7, online_challenger=OnlineClassifier()
    )
    scores = models.score(X)
    assert scores.thresholds == (0.2, 0.7) and scores.scored_by == f"{NAME} v1"
    assert set(scores.shadow_scores) == {ONLINE_LABELS_NAME}


def test_without_a_champion_the_labels_decide_once_they_taught_enough() -> None:
    learning = LabelLearning(OnlineClassifier())
    decider = OnlineDecider(RulesAndTrees(seed=1), learning, frauds_min=3, legit_min=5)
    models = ModelWatcher(None, NAME, decider, 7)
    assert models.score(X).scored_by == ONLINE_SCORER_NAME
    fraud = X | {"amount": 900.0, "customer_amount_ratio_30d": 40.0}
    for _ in range(30):
        learning.learn(fraud, True)
        learning.learn(X, False)
    scores = models.score(fraud)
    assert scores.scored_by == ONLINE_LABELS_NAME and scores.thresholds is None
    assert scores.score > models.score(X).score


def test_an_unsupervised_scorer_reviews_only_within_the_budget() -> None:
    class Drifting:
        """Scores that sit above the review threshold for most traffic."""

        def __init__(self) -> None:
            self.n = 0

        def learn_one(self, x: dict, y: bool | None = None) -> None:
            pass

        def score_one(self, x: dict) -> float:
            self.n += 1
            return 0.6 + (self.n % 100) / 1000  # 0.600 to 0.699: all "review" by default

    models = ModelWatcher(None, NAME, Drifting(), 7, review_budget=0.02)
    decisions = [assess(request(), X, models.score(X), DEFAULTS).decision for _ in range(3_000)]
    reviewed = decisions[1_000:].count(Decision.REVIEW)
    assert 0 < reviewed <= 0.02 * 2_000
    assert all(name in FEATURE_NAMES for name in X)


def test_backtest_compares_with_the_champions_thresholds_when_no_file_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from walletpipe.backtest import load_policies

    for variable in ("STREAMS_POLICY_FILE", "STREAMS_MODELS_DIR"):
        monkeypatch.delenv(variable, raising=False)
    candidate = tmp_path / "policy.json"
    candidate.write_text('{"version": 3, "review_threshold": 50, "decline_threshold": 90}')
    args = argparse.Namespace(policy=str(candidate), baseline=None)
    env = {"STREAMS_MODELS_DIR": str(tmp_path / "models")}
    _, baseline, role = load_policies(args, env)
    assert (baseline.review_at, baseline.decline_at, role) == (0.6, 0.85, "in force")
    metadata = {
        "training_window": {"from": "2026-01-01", "days": 7, "label_delay_days": 7},
        "thresholds": {"review_at": 0.25, "decline_at": 0.7},
    }
    Registry(tmp_path / "models").save(NAME, forest(1), metadata)
    _, baseline, role = load_policies(args, env)
    assert (baseline.review_at, baseline.decline_at, role) == (0.25, 0.7, "fraud v1 thresholds")
    assert "review from 25.00, decline from 70.00" in capsys.readouterr().out

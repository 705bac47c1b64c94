"""The registry's champion decides and its challengers score in shadow; the watcher reloads
them when the registry's pointers change and refuses a malformed artifact, keeping the
running models. Without a champion the online scorer decides."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from models.exceptions import ArtifactError
from models.features import FEATURE_NAMES
from models.forest import CompiledForest
from models.registry import Registry
from models.simple import RulesAndTrees
from streams.models_watch import ONLINE_SCORER_NAME, ModelWatcher, to_risk_score

NAME = "fraud"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def forest(seed: int) -> CompiledForest:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, len(FEATURE_NAMES)))
    y = (x[:, 0] + rng.normal(scale=0.5, size=300) > 1).astype(int)
    model = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=seed).fit(x, y)
    return CompiledForest.from_estimator(model, FEATURE_NAMES)


def train(registry: Registry, seed: int, label_delay_days: int = 7) -> int:
    metadata = {
        "training_window": {"from": "2026-01-01", "days": 7, "label_delay_days": label_delay_days}
    }
    return registry.save(NAME, forest(seed), metadata).version


X = {name: 0.5 for name in FEATURE_NAMES} | {"amount": 2.0}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def watcher(registry: Registry, clock: Clock) -> ModelWatcher:
    return ModelWatcher(registry.root, NAME, RulesAndTrees(seed=1), 7, 1.0, clock)


def test_without_a_champion_the_online_scorer_decides_and_says_so(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "streams.models"):
        models = watcher(registry, Clock())
    assert models.champion is None and models.scored_by == ONLINE_SCORER_NAME
    assert "no champion for model 'fraud'" in caplog.text
    scores = models.score(X)
    assert scores.scored_by == ONLINE_SCORER_NAME and scores.shadow_scores == {}
    assert 0.0 <= scores.score <= 1.0
    none = ModelWatcher(None, NAME, RulesAndTrees(seed=1), 7)
    assert none.scored_by == ONLINE_SCORER_NAME and not none.poll()


def test_the_champion_decides_and_challengers_score_in_shadow(registry: Registry) -> None:
    clock = Clock()
    models = watcher(registry, clock)
    first = train(registry, 1)  # the first version becomes the champion
    clock.now += 1.5
    assert models.poll()
    assert models.scored_by == "fraud v1"
    champion = registry.load(NAME, first).model
    assert models.score(X).score == champion.score_one(X)
    second = train(registry, 2)
    registry.set_challengers(NAME, [second])
    clock.now += 1.5
    assert models.poll()
    scores = models.score(X)
    assert scores.scored_by == "fraud v1"
    assert scores.shadow_scores == {
        "fraud v2": to_risk_score(registry.load(NAME, 2).model.score_one(X))
    }
    clock.now += 1.5
    assert not models.poll()  # nothing changed
    registry.promote(NAME, second)  # v2 decides, and is no longer a challenger
    clock.now += 1.5
    assert models.poll()
    assert models.score(X).scored_by == "fraud v2" and models.score(X).shadow_scores == {}
    # A new worker starts with what the registry says.
    assert watcher(registry, Clock()).scored_by == "fraud v2"


def test_a_malformed_artifact_is_refused_and_the_running_models_stay(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    train(registry, 1)
    models = watcher(registry, clock)
    assert models.scored_by == "fraud v1"
    broken = train(registry, 2)
    (registry.root / NAME / f"v{broken}" / "forest.npz").write_bytes(b"not a forest")
    (registry.root / NAME / "CHAMPION").write_text(f"v{broken}\n")  # by hand: promote checks
    clock.now += 1.5
    with caplog.at_level(logging.ERROR, "streams.models"):
        assert not models.poll()
    assert models.scored_by == "fraud v1" and models.score(X).scored_by == "fraud v1"
    assert "model change refused, fraud v1 and 0 challenger(s) stay in force" in caplog.text
    assert "sha256 does not match" in (models.refused or "")
    # Trained with another label delay than the stream's: refused too, with the reason.
    other = train(registry, 3, label_delay_days=3)
    (registry.root / NAME / "CHAMPION").write_text(f"v{other}\n")
    clock.now += 1.5
    assert not models.poll() and models.scored_by == "fraud v1"
    assert "label delay of 3 days" in (models.refused or "")
    # Back to a good one: in force again, the refusal forgotten.
    registry.promote(NAME, train(registry, 4))
    clock.now += 1.5
    assert models.poll() and models.scored_by == "fraud v4" and models.refused is None


def test_a_worker_does_not_start_on_a_champion_it_cannot_load(registry: Registry) -> None:
    version = train(registry, 1)
    (registry.root / NAME / f"v{version}" / "metadata.json").write_text("{")
    with pytest.raises(ArtifactError, match="metadata.json unreadable"):
        watcher(registry, Clock())


def test_scores_become_0_to_100_and_a_broken_one_the_riskiest() -> None:
    assert to_risk_score(0.123456) == Decimal("12.35")
    assert to_risk_score(1.7) == Decimal("100.00") == to_risk_score(float("nan"))
    assert to_risk_score(-1.0) == Decimal("0.00")


def test_a_bad_challenger_is_left_out_at_start_and_too_many_are_refused(
    registry: Registry,
) -> None:
    train(registry, 1)
    good, bad = train(registry, 2), train(registry, 3)
    registry.set_challengers(NAME, [good, bad])
    (registry.root / NAME / f"v{bad}" / "forest.npz").write_bytes(b"broken")
    clock = Clock()
    models = watcher(registry, clock)  # starts: the champion decides, the good one shadows
    assert models.scored_by == "fraud v1"
    assert [c.name for c in models.challengers] == ["fraud v2"]
    many = " ".join(f"v{good}" for _ in range(9))
    (registry.root / NAME / "CHALLENGERS").write_text(many)
    clock.now += 1.5
    assert not models.poll() and "at most 8 score in shadow" in (models.refused or "")
    assert [c.name for c in models.challengers] == ["fraud v2"]

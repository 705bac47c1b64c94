"""One generic suite that every scorer passes (the protocol, bounds, learning), plus the
compiled forest's equality with scikit-learn and its refusal of malformed arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from models.exceptions import ArtifactError
from models.forest import CompiledForest
from models.online import AnomalyScorer, OnlineClassifier, prequential
from models.protocol import Scorer

NAMES = ("amount", "count", "noise")


def separable(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    X = np.column_stack(
        [
            np.where(y, rng.normal(300, 30, n), rng.normal(40, 15, n)),
            rng.poisson(3, n),
            rng.normal(size=n),
        ]
    )
    return X, y


def as_dict(row: np.ndarray) -> dict[str, float]:
    return dict(zip(NAMES, map(float, row), strict=True))


def fitted_forest() -> CompiledForest:
    X, y = separable(2000)
    model = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)
    return CompiledForest.from_estimator(model.fit(X, y.astype(int)), NAMES)


SCORERS = {
    "compiled forest": fitted_forest,
    "online logistic regression": OnlineClassifier,
    "half-space trees": lambda: AnomalyScorer(seed=1, window_size=50),
}


@pytest.mark.parametrize("make", SCORERS.values(), ids=SCORERS.keys())
def test_every_scorer_follows_the_protocol_and_ranks_fraud_higher(make) -> None:
    scorer = make()
    assert isinstance(scorer, Scorer)
    X, y = separable(1500, seed=1)
    for row, label in zip(X[:1000], y[:1000], strict=True):
        scorer.learn_one(as_dict(row), bool(label))
    scores = np.array([scorer.score_one(as_dict(row)) for row in X[1000:]])
    assert np.all((scores >= 0) & (scores <= 1))
    held_out = y[1000:]
    assert scores[held_out].mean() > scores[~held_out].mean() + 0.1


@pytest.mark.parametrize(
    "model",
    [
        RandomForestClassifier(n_estimators=30, min_samples_leaf=2, random_state=0),
        ExtraTreesClassifier(n_estimators=30, random_state=0),
    ],
)
def test_compiled_forest_scores_exactly_as_scikit_learn(model) -> None:
    X, y = separable(3000, seed=2)
    model.fit(X, y.astype(int))
    compiled = CompiledForest.from_estimator(model, NAMES)
    probe = separable(500, seed=3)[0]
    ours = np.array([compiled.score_row(row) for row in probe])
    np.testing.assert_allclose(ours, model.predict_proba(probe)[:, 1], rtol=0, atol=1e-12)
    assert compiled.score_one(as_dict(probe[0])) == pytest.approx(ours[0], abs=1e-12)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda a: a.update(left=a["left"][:-1]), "inconsistent lengths"),
        (
            lambda a: a["left"].__setitem__(int(np.flatnonzero(a["left"] != -1)[0]), 10**9),
            "points outside",
        ),
        (
            lambda a: a["left"].__setitem__(int(np.flatnonzero(a["left"] != -1)[0]), 0),
            "do not form trees",
        ),
        (
            lambda a: a["feature"].__setitem__(int(np.flatnonzero(a["left"] != -1)[0]), 99),
            "does not name",
        ),
        (lambda a: a["leaf_value"].__setitem__(0, np.nan), "not finite"),
        (lambda a: a.pop("threshold"), "lack"),
    ],
)
def test_malformed_forest_arrays_are_refused(damage, message) -> None:
    arrays = {k: v.copy() for k, v in fitted_forest().arrays.items()}
    damage(arrays)
    with pytest.raises(ArtifactError, match=message):
        CompiledForest(arrays, NAMES)


def test_a_multiclass_or_unfitted_estimator_is_refused() -> None:
    with pytest.raises(ArtifactError):
        CompiledForest.from_estimator(RandomForestClassifier(), NAMES)


def test_prequential_learns_only_after_the_label_delay() -> None:
    learnt: list[float] = []

    class Recorder:
        def learn_one(self, x, y=None) -> None:
            learnt.append(x["t"])

        def score_one(self, x) -> float:
            return float(len(learnt))

    day = 86_400
    stream = [(t * day, {"t": float(t)}, True) for t in range(10)]
    scores = list(prequential(Recorder(), stream, label_delay_days=3))
    assert scores == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]  # day t sees labels up to t - 3
    assert learnt == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]

"""Labelled files, metrics computed by hand, and the artifact registry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from models.dataset import validate
from models.exceptions import ArtifactError, DatasetError
from models.features import FEATURE_NAMES
from models.forest import CompiledForest
from models.metrics import card_precision_at_k, evaluate_scores
from models.registry import Registry


def frame(**overrides: object) -> pd.DataFrame:
    data = {
        "transaction_id": [1, 2, 3],
        "timestamp": ["2024-01-02T10:00:00Z", "2024-01-01T09:00:00", 1704067200],
        "wallet_id": ["a", "b", "a"],
        "counterparty_id": ["m1", "m2", "m1"],
        "amount": ["12.50", 3, 7.25],
        "label": [0, 1, 0],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_a_valid_file_is_sorted_typed_and_aliased() -> None:
    out = validate(
        frame().rename(columns={"wallet_id": "customer_id", "counterparty_id": "terminal_id"})
    )
    assert list(out["transaction_id"]) == [3, 2, 1]  # by time
    assert out["amount"].tolist() == [7.25, 3.0, 12.5]
    assert out["time_s"].iloc[0] == 1704067200 and out["day"].iloc[0] == 19723


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amount": ["1", "-2", "3"]}, "not a number >= 0"),
        ({"amount": ["1", "x", "3"]}, "not a number >= 0"),
        ({"amount": ["1", "inf", "3"]}, "not a number >= 0"),
        ({"label": [0, 2, 1]}, "must be 0 or 1"),
        ({"transaction_id": [1, 1, 2]}, "not unique"),
        ({"timestamp": ["yesterday", "x", "y"]}, "not a time"),
    ],
)
def test_bad_files_are_refused_with_the_reason(change: dict, message: str) -> None:
    data = frame(**change).rename(
        columns={"wallet_id": "customer_id", "counterparty_id": "terminal_id"}
    )
    with pytest.raises(DatasetError, match=message):
        validate(data)


def test_zero_amounts_are_kept_with_a_warning() -> None:
    """The Handbook's generator makes a few 0.00 amounts: its files are read, not refused."""
    warnings: list[str] = []
    out = validate(
        frame(amount=["0.00", 3, 0]).rename(
            columns={"wallet_id": "customer_id", "counterparty_id": "terminal_id"}
        ),
        "f.csv",
        warnings.append,
    )
    assert sorted(out["amount"].tolist()) == [0.0, 0.0, 3.0]
    assert warnings == ["f.csv: 2 row(s) with an amount of 0.00, first at row 0; kept"]


def test_a_missing_column_is_named() -> None:
    with pytest.raises(DatasetError, match="label"):
        validate(
            frame()
            .drop(columns=["label"])
            .rename(columns={"wallet_id": "customer_id", "counterparty_id": "terminal_id"})
        )


def test_card_precision_ranks_cards_per_day_and_drops_found_ones() -> None:
    day = np.array([1, 1, 1, 1, 2, 2, 2])
    customer = np.array(["a", "a", "b", "c", "a", "b", "c"])
    score = np.array([0.9, 0.1, 0.8, 0.2, 0.99, 0.5, 0.4])
    label = np.array([1, 0, 0, 0, 1, 1, 0])
    mean, per_day = card_precision_at_k(day, customer, score, label, k=2)
    # Day 1: top cards a (fraud), b (genuine) -> 1/2. Day 2: a was found, so b and c -> 1/2.
    assert per_day == [0.5, 0.5] and mean == 0.5


def test_evaluate_scores_perfect_ranking_and_cost() -> None:
    test = pd.DataFrame(
        {
            "day": [1, 1, 1, 1],
            "customer_id": ["a", "b", "c", "d"],
            "label": [1, 0, 0, 1],
            "amount": [100.0, 5.0, 7.0, 50.0],
        }
    )
    result = evaluate_scores(test, np.array([0.9, 0.1, 0.6, 0.8]), k=2)
    assert result["roc_auc"] == 1.0 and result["average_precision"] == 1.0
    assert result["fraud_amount_caught"] == 150.0 and result["good_customers_blocked"] == 1
    assert result["cost"] == 5.0  # nothing missed, one good customer blocked


def forest() -> CompiledForest:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, len(FEATURE_NAMES)))
    y = (X[:, 0] > 1).astype(int)
    return CompiledForest.from_estimator(
        RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y), FEATURE_NAMES
    )


def test_registry_versions_champion_and_challengers(tmp_path) -> None:
    registry = Registry(tmp_path)
    first = registry.save("fraud", forest(), {"metrics": {"average_precision": 0.7}})
    second = registry.save("fraud", forest(), {"metrics": {"average_precision": 0.8}})
    assert (first.version, second.version) == (1, 2)
    assert registry.champion_version("fraud") == 1  # the first one serves until promoted
    registry.set_challengers("fraud", [2])
    registry.promote("fraud", 2)
    assert registry.champion("fraud").version == 2 and registry.challengers("fraud") == []
    with pytest.raises(ArtifactError, match="is the champion"):
        registry.set_challengers("fraud", [1, 2])
    assert registry.challengers("fraud") == []  # a refused list changes nothing
    loaded = registry.load("fraud", 1)
    row = [0.5] * len(FEATURE_NAMES)
    assert loaded.model.score_row(row) == first.model.score_row(row)
    assert loaded.metadata["features"] == list(FEATURE_NAMES)


def test_tampered_or_foreign_artifacts_are_refused(tmp_path) -> None:
    registry = Registry(tmp_path)
    registry.save("fraud", forest(), {})
    folder = tmp_path / "fraud" / "v1"
    metadata = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**metadata, "features": ["x"]}))
    with pytest.raises(ArtifactError, match="re-train"):
        registry.load("fraud", 1)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    (folder / "forest.npz").write_bytes(b"not an archive")
    with pytest.raises(ArtifactError, match="sha256"):
        registry.load("fraud", 1)
    (folder / "metadata.json").write_text("{")
    with pytest.raises(ArtifactError, match="unreadable"):
        registry.load("fraud", 1)
    with pytest.raises(ArtifactError):
        registry.promote("fraud", 7)
    with pytest.raises(ArtifactError, match="no champion"):
        Registry(tmp_path / "empty").champion("fraud")

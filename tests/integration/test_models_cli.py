"""`walletpipe models`: make data, evaluate (report and plots), train and register."""

from __future__ import annotations

import json

import pytest

from walletpipe.cli import main

pytestmark = pytest.mark.integration


def test_handbook_evaluate_train_list(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WALLETPIPE_MODELS_DIR", str(tmp_path / "registry"))
    data = tmp_path / "handbook.csv"
    assert (
        main(
            [
                "models",
                "handbook",
                "--out",
                str(data),
                "--customers",
                "400",
                "--terminals",
                "800",
                "--days",
                "70",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    report = tmp_path / "report"
    assert main(["models", "evaluate", "--data", str(data), "--out", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "champion: random forest, all features" in printed
    assert "online: logistic regression (river), prequential" in printed
    models = json.loads((report / "report.json").read_text())["models"]
    assert len(models) == 5
    champion = models["champion: random forest, all features"]
    assert 0.5 < champion["roc_auc"] <= 1.0 and champion["frauds"] > 0
    for picture in ("precision_recall.png", "score_histogram.png"):
        assert (report / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["models", "train", "--data", str(data)]) == 0
    assert main(["models", "list"]) == 0
    assert "v1    champion" in capsys.readouterr().out


def test_evaluate_refuses_a_bad_file(tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("transaction_id,timestamp\n1,2024-01-01\n")
    from models.exceptions import DatasetError

    with pytest.raises(DatasetError, match="missing column"):
        main(["models", "evaluate", "--data", str(bad)])

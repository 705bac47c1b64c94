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


def test_evaluate_refuses_a_bad_file(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("transaction_id,timestamp\n1,2024-01-01\n")
    report = tmp_path / "report"
    assert main(["models", "evaluate", "--data", str(bad), "--out", str(report)]) == 2
    assert "error: " in capsys.readouterr().err
    assert not report.exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "handbook", "--out", "{tmp}/x.csv", "--days", "0"], "days must be from 1"),
        (["models", "handbook", "--out", "{tmp}/x.txt", "--days", "2"], ".csv or .parquet"),
        (["models", "evaluate", "--data", "{tmp}/none.csv"], "no such file"),
        (["models", "evaluate", "--data", "{tmp}/ok.csv", "--train-start", "2018-13-01"], "YYYY"),
        (["models", "evaluate", "--data", "{tmp}/ok.csv", "--test-days", "0"], "1 test day"),
        (["models", "evaluate", "--data", "{tmp}/ok.csv", "--train-days", "60"], "does not cover"),
        (["models", "promote", "7"], "no version v7"),
        (["models", "challengers", "3"], "no version v3"),
    ],
)
def test_bad_input_is_refused_with_one_line(tmp_path, monkeypatch, capsys, argv, message) -> None:
    monkeypatch.setenv("WALLETPIPE_MODELS_DIR", str(tmp_path / "registry"))
    days = 3
    rows = ["transaction_id,timestamp,customer_id,terminal_id,amount,label"]
    rows += [
        f"{i},{86_400 * (i % days) + i},c{i % 5},t{i % 7},{10 + i},{i % 9 == 0:d}"
        for i in range(60)
    ]
    (tmp_path / "ok.csv").write_text("\n".join(rows) + "\n")
    argv = [part.replace("{tmp}", str(tmp_path)) for part in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()

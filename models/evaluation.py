"""``walletpipe models evaluate``: train, wait, test — the Handbook's protocol.

A training period (default 7 days), then a delay period (7 days: labels of the newest
transactions are not known yet when a model is trained), then a test period (7 days).
Customers known to be compromised by each test day (frauds seen up to the delay before it)
drop out of that day's test set, as an investigator would already have blocked them.
Features come from ``models.features.replay``: each transaction's, from what was known then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.exceptions import DatasetError
from models.features import (
    CUSTOMER_WINDOWS_DAYS,
    FEATURE_NAMES,
    TERMINAL_WINDOWS_DAYS,
    Event,
    as_row,
    replay,
)
from models.forest import CompiledForest
from models.handbook_features import HANDBOOK_FEATURES, handbook_features
from models.metrics import evaluate_scores
from models.online import AnomalyScorer, OnlineClassifier, prequential
from models.thresholds import (
    DEFAULT_DECLINE_PRECISION,
    DEFAULT_REVIEW_BUDGET,
    Thresholds,
    choose_thresholds,
)

#: The champion's settings: small enough to score in microseconds (see bench/scoring).
#: 50 trees of half the features per split scored as well as 100 of sqrt(features) on
#: Handbook seeds 0, 1 and 2 (docs/models.md), with a third of the nodes to walk.
CHAMPION_PARAMS = {"n_estimators": 50, "max_depth": 12, "min_samples_leaf": 3, "max_features": 0.5}
#: The Handbook's features sit beside the engine's (some share a name, not a definition).
HANDBOOK_PREFIX = "handbook_"
_HANDBOOK_COLUMNS = tuple(HANDBOOK_PREFIX + name for name in HANDBOOK_FEATURES)
HISTORY_DAYS = max(CUSTOMER_WINDOWS_DAYS) + max(TERMINAL_WINDOWS_DAYS) + 8


@dataclass(frozen=True)
class Protocol:
    train_start_day: int | None = None  # days since 1970-01-01; None: the latest that fits
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7
    seed: int = 0
    #: The targets the champion's thresholds are chosen for (``models.thresholds``).
    review_budget: float = DEFAULT_REVIEW_BUDGET
    decline_precision: float = DEFAULT_DECLINE_PRECISION

    def resolved(self, frame: pd.DataFrame) -> Protocol:
        if self.train_days < 1 or self.test_days < 1 or self.delay_days < 0:
            raise DatasetError("give at least 1 training and 1 test day, and a delay of 0 or more")
        span = self.train_days + self.delay_days + self.test_days
        start = self.train_start_day
        if start is None:
            start = int(frame["day"].max()) - span + 1
        if start + span - 1 > frame["day"].max() or start < frame["day"].min():
            raise DatasetError("the data does not cover the training, delay and test periods")
        return Protocol(
            start,
            self.train_days,
            self.delay_days,
            self.test_days,
            self.seed,
            self.review_budget,
            self.decline_precision,
        )


def featurize(frame: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
    events = (
        (Event(int(t), c, m, float(a)), bool(y))
        for t, c, m, a, y in zip(
            frame["time_s"],
            frame["customer_id"],
            frame["terminal_id"],
            frame["amount"],
            frame["label"],
            strict=True,
        )
    )
    rows = [as_row(x) for x in replay(events, label_delay_days)]
    return pd.DataFrame(rows, columns=list(FEATURE_NAMES), index=frame.index)


def split(frame: pd.DataFrame, p: Protocol) -> tuple[pd.Index, pd.Index]:
    assert p.train_start_day is not None
    day, customer, label = frame["day"], frame["customer_id"], frame["label"]
    train_end = p.train_start_day + p.train_days
    train = frame.index[(day >= p.train_start_day) & (day < train_end)]
    known = set(customer[train][label[train] == 1])
    test_parts = []
    for offset in range(p.test_days):
        seen_by = train_end + offset - 1  # frauds up to the delay before this test day
        known |= set(customer[(day == seen_by) & (label == 1)])
        test_day = train_end + p.delay_days + offset
        test_parts.append(frame.index[(day == test_day) & ~customer.isin(known)])
    return train, pd.Index(np.concatenate(test_parts))


def _batch_models(seed: int) -> dict[str, tuple[tuple[str, ...], Callable[[], Any]]]:
    """Each model's feature columns and how to make it. The baselines read the Handbook's
    own 15 features (``models.handbook_features``), the champion the engine's."""
    return {
        "baseline: logistic regression, Handbook features": (
            _HANDBOOK_COLUMNS,
            lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        ),
        "baseline: random forest, Handbook features": (
            _HANDBOOK_COLUMNS,
            lambda: RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=seed),
        ),
        "champion: random forest, all features": (
            FEATURE_NAMES,
            lambda: RandomForestClassifier(**CHAMPION_PARAMS, n_jobs=2, random_state=seed),
        ),
    }


@dataclass
class Evaluation:
    protocol: Protocol
    table: pd.DataFrame
    champion: CompiledForest
    scores: dict[str, np.ndarray]
    test: pd.DataFrame
    #: The champion's thresholds, chosen on its scores of the test period (its validation:
    #: no label of it reached the model) for the protocol's review budget and precision.
    thresholds: Thresholds

    def champion_metadata(self) -> dict[str, Any]:
        p = self.protocol
        assert p.train_start_day is not None
        day = pd.Timestamp(0, tz="UTC") + pd.Timedelta(days=p.train_start_day)
        metrics = self.table.loc["champion: random forest, all features"].to_dict()
        return {
            "kind": "random_forest",
            "params": CHAMPION_PARAMS,
            "training_window": {
                "from": day.date().isoformat(),
                "days": p.train_days,
                "label_delay_days": p.delay_days,
            },
            "metrics": {
                k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()
            },
            "thresholds": self.thresholds.as_json(),
        }


def evaluate(
    frame: pd.DataFrame,
    protocol: Protocol = Protocol(),
    online: bool = True,
    log: Callable[[str], None] = print,
) -> Evaluation:
    p = protocol.resolved(frame)
    assert p.train_start_day is not None
    first = p.train_start_day - HISTORY_DAYS  # features look back at most this far
    frame = frame[frame["day"] >= first]
    started = time.monotonic()
    features = featurize(frame, p.delay_days)
    features = features.join(handbook_features(frame, p.delay_days).add_prefix(HANDBOOK_PREFIX))
    log(f"features for {len(frame):,} transactions in {time.monotonic() - started:.0f}s")
    train, test = split(frame, p)
    if frame.loc[train, "label"].nunique() < 2:
        raise DatasetError("the training period needs both frauds and genuine transactions")
    test_frame = frame.loc[test]
    rows, scores = {}, {}
    champion = None
    for name, (columns, make) in _batch_models(p.seed).items():
        model = make().fit(features.loc[train, list(columns)], frame.loc[train, "label"])
        scores[name] = model.predict_proba(features.loc[test, list(columns)])[:, 1]
        rows[name] = evaluate_scores(test_frame, scores[name])
        if name.startswith("champion"):
            champion = CompiledForest.from_estimator(model, FEATURE_NAMES)
        log(f"{name}: AP {rows[name]['average_precision']:.3f}")
    if online:
        window = frame[frame["day"] < p.train_start_day + p.train_days + p.delay_days + p.test_days]
        window = window[window["day"] >= p.train_start_day]
        engine_features = features[list(FEATURE_NAMES)]
        for name, model in (
            ("online: logistic regression (river), prequential", OnlineClassifier()),
            ("online: HalfSpaceTrees (river, no labels), prequential", AnomalyScorer(seed=p.seed)),
        ):
            stream = (
                (int(t), engine_features.loc[i].to_dict(), bool(y))
                for i, t, y in zip(window.index, window["time_s"], window["label"], strict=True)
            )
            online_scores = pd.Series(
                list(prequential(model, stream, p.delay_days)), index=window.index
            )
            scores[name] = online_scores.loc[test].to_numpy()
            rows[name] = evaluate_scores(test_frame, scores[name])
            log(f"{name}: AP {rows[name]['average_precision']:.3f}")
    assert champion is not None
    table = pd.DataFrame.from_dict(rows, orient="index")
    thresholds = choose_thresholds(
        scores["champion: random forest, all features"],
        test_frame["label"].to_numpy(),
        p.review_budget,
        p.decline_precision,
    )
    log(f"champion {thresholds.describe()}")
    return Evaluation(p, table, champion, scores, test_frame, thresholds)


def write_report(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """The table (text and JSON) and the PNG plots: PR curves, champion score histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    label = evaluation.test["label"].to_numpy()
    figure, axis = plt.subplots(figsize=(7, 5))
    for name, score in evaluation.scores.items():
        precision, recall, _ = precision_recall_curve(label, score)
        ap = evaluation.table.loc[name, "average_precision"]
        axis.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
    axis.set(xlabel="recall", ylabel="precision", title="Precision-recall on the test period")
    axis.legend(fontsize=7)
    pr_path = out_dir / "precision_recall.png"
    figure.savefig(pr_path, dpi=120, bbox_inches="tight")
    plt.close(figure)

    champion = evaluation.scores["champion: random forest, all features"]
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 41)
    axis.hist(champion[label == 0], bins=bins, alpha=0.6, label="genuine", log=True)
    axis.hist(champion[label == 1], bins=bins, alpha=0.6, label="fraud", log=True)
    axis.set(xlabel="champion score", ylabel="transactions (log)", title="Champion scores by label")
    axis.legend()
    histogram_path = out_dir / "score_histogram.png"
    figure.savefig(histogram_path, dpi=120, bbox_inches="tight")
    plt.close(figure)

    table_path = out_dir / "report.json"
    table_path.write_text(
        json.dumps(
            {
                "protocol": evaluation.protocol.__dict__,
                "models": json.loads(evaluation.table.to_json(orient="index")),
                "champion_thresholds": evaluation.thresholds.as_json(),
            },
            indent=2,
        )
    )
    text_path = out_dir / "report.txt"
    text_path.write_text(format_table(evaluation.table) + "\n")
    return [text_path, table_path, pr_path, histogram_path]


def format_table(table: pd.DataFrame) -> str:
    columns = [
        "roc_auc",
        "average_precision",
        "card_precision_at_100",
        "fraud_amount_caught",
        "good_customers_blocked",
        "cost",
    ]
    shown = table[columns].copy()
    for column in ("roc_auc", "average_precision", "card_precision_at_100"):
        shown[column] = shown[column].map(lambda v: f"{v:.3f}")
    return shown.to_string()

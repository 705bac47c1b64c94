"""bench/scoring: microseconds per event for features + score, p50 and p99, on one core.

Trains the champion forest (models.evaluation.CHAMPION_PARAMS) on generated Handbook data,
warms the feature engine on the earlier days, then times each later event one at a time,
as the stream sees them: features (models.features), then the compiled forest's score.
Side by side in the same run: the same events scored by scikit-learn's own predict_proba,
the path a straightforward implementation would take. Target: p99 <= 100 us.

    .venv/bin/python -m bench.scoring.run [--events 20000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from models.dataset import validate
from models.evaluation import CHAMPION_PARAMS, featurize
from models.features import FEATURE_NAMES, Event, FeatureEngine, as_row
from models.forest import CompiledForest
from models.handbook import HandbookConfig, generate

TARGET_P99_US = 100.0


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    values = np.array(samples_ns) / 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--baseline-events", type=int, default=2_000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    frame = validate(generate(HandbookConfig(customers=2_000, terminals=4_000, days=70, seed=1)))
    split_day = int(frame["day"].min()) + 50
    history, live = frame[frame["day"] < split_day], frame[frame["day"] >= split_day]
    features = featurize(history, label_delay_days=7)
    model = RandomForestClassifier(**CHAMPION_PARAMS, random_state=0).fit(
        features.to_numpy(), history["label"].to_numpy()
    )
    forest = CompiledForest.from_estimator(model, FEATURE_NAMES)

    engine = FeatureEngine(label_delay_days=7)
    for t, c, m, a in zip(
        history["time_s"],
        history["customer_id"],
        history["terminal_id"],
        history["amount"],
        strict=True,
    ):
        engine.observe(Event(int(t), c, m, float(a)))
    events = [
        Event(int(t), c, m, float(a))
        for t, c, m, a in zip(
            live["time_s"], live["customer_id"], live["terminal_id"], live["amount"], strict=True
        )
    ][: args.events]

    feature_ns, score_ns, total_ns, rows = [], [], [], []
    clock = time.perf_counter_ns
    for event in events:
        start = clock()
        x = engine.features(event)
        middle = clock()
        forest.score_one(x)
        end = clock()
        engine.observe(event)
        feature_ns.append(middle - start)
        score_ns.append(end - middle)
        total_ns.append(end - start)
        rows.append(as_row(x))
    baseline_ns = []
    for row in rows[: args.baseline_events]:
        start = clock()
        model.predict_proba(np.asarray([row]))
        baseline_ns.append(clock() - start)

    f50, f99 = percentiles(feature_ns)
    s50, s99 = percentiles(score_ns)
    t50, t99 = percentiles(total_ns)
    b50, b99 = percentiles(baseline_ns)
    nodes = len(forest.arrays["left"])
    print(
        f"bench/scoring: {len(events):,} events, one core, forest of "
        f"{len(forest.arrays['roots'])} trees / {nodes:,} nodes, {len(FEATURE_NAMES)} features"
    )
    print(f"{'path':<44}{'p50 us':>10}{'p99 us':>10}")
    print(f"{'features (models.features)':<44}{f50:>10.1f}{f99:>10.1f}")
    print(f"{'score (compiled forest)':<44}{s50:>10.1f}{s99:>10.1f}")
    print(f"{'features + score':<44}{t50:>10.1f}{t99:>10.1f}")
    print(f"{'baseline: score by scikit-learn predict_proba':<44}{b50:>10.1f}{b99:>10.1f}")
    print(
        f"compiled forest vs scikit-learn, p50: {b50 / s50:.0f}x faster; "
        f"features + score p99 {t99:.1f} us vs target {TARGET_P99_US:.0f} us: "
        f"{'MET' if t99 <= TARGET_P99_US else 'MISSED'}"
    )


if __name__ == "__main__":
    main()

"""The streaming feature engine: exact windows, label delay, bounded state."""

from __future__ import annotations

import random

import pytest

from models.features import (
    CUSTOMER_EVENTS_MAX,
    FEATURE_NAMES,
    NO_KNOWN_FRAUD_DAYS,
    SECONDS_PER_DAY,
    Event,
    FeatureEngine,
    TerminalState,
    as_row,
    replay,
)

DAY = SECONDS_PER_DAY


def brute_customer(history: list[Event], event: Event) -> dict[str, float]:
    """The definition, computed the slow way: windows include the current event."""
    out = {}
    for window in (1, 7, 30):
        inside = [e for e in history if event.time_s - e.time_s < window * DAY]
        out[f"customer_nb_{window}d"] = len(inside) + 1
        out[f"customer_avg_{window}d"] = (sum(e.amount for e in inside) + event.amount) / (
            len(inside) + 1
        )
    out["customer_nb_1h"] = sum(1 for e in history if event.time_s - e.time_s < 3600) + 1
    return out


def test_customer_windows_match_the_definition() -> None:
    rng = random.Random(3)
    engine = FeatureEngine()
    history: list[Event] = []
    time_s = 10 * DAY
    for _ in range(3000):
        time_s += rng.randrange(0, 8 * 3600)
        event = Event(time_s, "alice", f"t{rng.randrange(5)}", round(rng.uniform(1, 300), 2))
        features = engine.features(event)
        for name, value in brute_customer(history, event).items():
            assert features[name] == pytest.approx(value, rel=1e-9), name
        engine.observe(event)
        history.append(event)


def test_amount_ratio_and_new_terminal() -> None:
    engine = FeatureEngine()
    for day in range(5):
        engine.observe(Event(day * DAY, "c", "home", 10.0))
    x = engine.features(Event(5 * DAY, "c", "elsewhere", 50.0))
    assert x["customer_amount_ratio_30d"] == pytest.approx(5.0)
    assert x["customer_max_ratio_30d"] == pytest.approx(5.0)
    assert x["new_terminal"] == 1.0 and x["customer_new"] == 0.0
    assert engine.features(Event(5 * DAY, "c", "home", 10.0))["new_terminal"] == 0.0
    first = FeatureEngine().features(Event(0, "new", "t", 10.0))
    assert first["customer_new"] == 1.0 and first["customer_amount_ratio_30d"] == 1.0


def test_terminal_risk_counts_only_labels_older_than_the_delay() -> None:
    engine = FeatureEngine(label_delay_days=7)
    engine.observe(Event(10 * DAY + 100, "c1", "T", 5.0))
    engine.observe(Event(10 * DAY + 200, "c2", "T", 5.0))
    engine.apply_label("T", 10 * DAY + 100, True)
    # Day 17: day 10 is not yet past the delay (known days end before day 17 - 7 = 10).
    assert engine.features(Event(17 * DAY, "c3", "T", 5.0))["terminal_nb_30d"] == 0
    x = engine.features(Event(18 * DAY, "c3", "T", 5.0))
    assert x["terminal_nb_1d"] == 2 and x["terminal_risk_1d"] == 0.5
    assert x["terminal_frauds_30d"] == 1 and x["terminal_days_since_fraud"] == 0
    assert x["terminal_risk_since_fraud"] == 0.5
    # Day 24: known days end at 17; the 7-day window is days 10 to 16.
    later = engine.features(Event(24 * DAY, "c3", "T", 5.0))
    assert later["terminal_nb_1d"] == 0 and later["terminal_nb_7d"] == 2
    assert later["terminal_days_since_fraud"] == 6
    gone = engine.features(Event(60 * DAY, "c3", "T", 5.0))
    assert gone["terminal_nb_30d"] == 0
    assert gone["terminal_days_since_fraud"] == NO_KNOWN_FRAUD_DAYS


def test_replay_releases_labels_only_after_the_delay() -> None:
    events = [(Event(d * DAY + 10, f"c{d}", "T", 5.0), d == 0) for d in range(12)]
    rows = list(replay(events, label_delay_days=7))
    frauds = [row["terminal_frauds_30d"] for row in rows]
    assert frauds[:8] == [0.0] * 8  # day 0's fraud is known from day 8 on
    assert all(f == 1.0 for f in frauds[8:])


def test_state_is_bounded() -> None:
    engine = FeatureEngine()
    for i in range(CUSTOMER_EVENTS_MAX + 500):
        engine.observe(Event(i, "busy", "T", 1.0))
    busy = engine.customers["busy"]
    assert [len(w) for w in busy.window_events()] == [CUSTOMER_EVENTS_MAX] * 4
    # The flat event array's dead front is cut once it is as long as what is kept.
    assert len(busy.events) <= 2 * (2 * CUSTOMER_EVENTS_MAX) + 64
    for day in range(200):
        engine.observe(Event(day * DAY, "c", "T2", 1.0))
    assert len(engine.terminals["T2"].days) <= 30 + 7 + 1


def test_labels_for_unknown_terminals_or_old_days_are_ignored() -> None:
    engine = FeatureEngine()
    engine.apply_label("never-seen", 5 * DAY, True)
    engine.apply_label("never-seen", 5 * DAY, False)
    assert engine.terminals == {}


def test_as_row_orders_every_feature() -> None:
    x = FeatureEngine().features(Event(3 * DAY + 7 * 3600, "c", "t", 12.5))
    assert set(x) == set(FEATURE_NAMES)
    row = as_row(x)
    assert row[FEATURE_NAMES.index("amount")] == 12.5
    assert row[FEATURE_NAMES.index("hour")] == 7.0
    assert x["is_night"] == 0.0 and x["is_weekend"] == 1.0  # 1970-01-04 was a Sunday


def brute_terminal(days: dict[int, list[int]], last_known_day: int) -> dict[str, float]:
    """The terminal features' definition, the slow way: day ``last_known_day - age`` for
    ages 1..window; the share since the earliest known fraud runs up to age 1."""
    out: dict[str, float] = {}
    for window in (1, 7, 30):
        inside = [days[d] for d in days if 1 <= last_known_day - d <= window]
        transactions, frauds = sum(b[0] for b in inside), sum(b[1] for b in inside)
        out[f"terminal_nb_{window}d"] = transactions
        out[f"terminal_risk_{window}d"] = frauds / transactions if transactions else 0.0
    fraud_ages = [last_known_day - d for d in days if 1 <= last_known_day - d <= 30 and days[d][1]]
    out["terminal_frauds_30d"] = sum(days[last_known_day - a][1] for a in fraud_ages)
    out["terminal_days_since_fraud"] = min(fraud_ages) - 1 if fraud_ages else NO_KNOWN_FRAUD_DAYS
    out["terminal_frauds_recent"] = sum(
        days[d][1] for d in days if last_known_day <= d <= last_known_day + 7
    )
    out["terminal_days_since_first_fraud"] = (
        max(fraud_ages) - 1 if fraud_ages else NO_KNOWN_FRAUD_DAYS
    )
    if fraud_ages:
        since = [days[d] for d in days if 1 <= last_known_day - d <= max(fraud_ages)]
        out["terminal_risk_since_fraud"] = sum(b[1] for b in since) / sum(b[0] for b in since)
    else:
        out["terminal_risk_since_fraud"] = 0.0
    return out


def test_terminal_features_match_the_definition() -> None:
    rng = random.Random(5)
    engine = FeatureEngine(label_delay_days=7)
    for step in range(2000):
        day = 40 + step // 20
        event = Event(day * DAY + rng.randrange(DAY), f"c{step}", "T", 10.0)
        x = engine.features(event)
        expected = brute_terminal(engine.terminals.get("T", TerminalState()).days, day - 7)
        for name, value in expected.items():
            assert x[name] == pytest.approx(value, rel=1e-12), (step, name)
        engine.observe(event)
        if rng.random() < 0.15:  # a fraud label for a day whose labels are in
            engine.apply_label("T", (day - rng.randrange(7, 40)) * DAY, True)


def test_cached_terminal_sums_follow_late_events_and_labels() -> None:
    """The engine slides each terminal's sums a day at a time and caches them: events out
    of time order, labels for days already inside a window and gaps of days between
    events must still give the definition's figures."""
    rng = random.Random(11)
    engine = FeatureEngine(label_delay_days=7)
    day = 40
    for step in range(3000):
        day += rng.choice((0, 0, 0, 1, 1, 2, 3, 12))
        late = rng.random() < 0.05  # an event that arrives a few days late
        event_day = day - rng.randrange(1, 10) if late else day
        terminal = f"T{rng.randrange(3)}"
        event = Event(event_day * DAY + rng.randrange(DAY), f"c{step}", terminal, 10.0)
        x = engine.features(event)
        expected = brute_terminal(
            engine.terminals.get(terminal, TerminalState()).days, event_day - 7
        )
        for name, value in expected.items():
            assert x[name] == pytest.approx(value, rel=1e-12), (step, name)
        engine.observe(event)
        if rng.random() < 0.3:
            engine.apply_label(terminal, (day - rng.randrange(0, 40)) * DAY, True)

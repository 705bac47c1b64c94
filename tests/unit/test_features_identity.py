"""The rewritten feature engine gives the reference engine's features bit for bit, and the
customer and terminal states either one wrote restore in the other.

``features_reference`` is the engine the champion's quality figures were measured with and
whose JSON the running stream has stored (deques of ``(time, amount)`` per window). The
rewrite keeps its arithmetic, so these tests compare with ``float.hex`` (``-0.0`` and
``0.0`` differ there; approximately equal is a failure)."""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pandas as pd
import pytest

import models.features as engine_module
import tests.unit.features_reference as reference_module
from models.dataset import validate
from models.features import (
    FEATURE_NAMES,
    SECONDS_PER_DAY,
    CustomerState,
    Event,
    FeatureEngine,
    TerminalState,
    replay,
)
from models.handbook import HandbookConfig, generate
from models.scenarios import ScenarioConfig, Simulator, to_frame
from tests.unit import features_reference as reference

DAY = SECONDS_PER_DAY


def bits(x: dict[str, float]) -> list[str]:
    """Every feature in ``FEATURE_NAMES`` order, as the exact bits of its float."""
    return [float(x[name]).hex() for name in FEATURE_NAMES]


def roundtrip(value: Any) -> Any:
    """What a JSON state store does to a value: JSON out and back."""
    return json.loads(json.dumps(value))


def text(value: Any) -> str:
    """A table value as stored: ``1.0`` and ``1`` differ here, as they do in the table."""
    return json.dumps(value)


def labelled(frame: pd.DataFrame) -> Iterator[tuple[Event, bool]]:
    """The file's rows as ``models.evaluation.featurize`` reads them."""
    columns = ("time_s", "customer_id", "terminal_id", "amount", "label")
    for t, c, m, a, y in zip(*(frame[name] for name in columns), strict=True):
        yield Event(int(t), c, m, float(a)), bool(y)


def assert_replays_match(events: list[tuple[Event, bool]]) -> list[dict[str, float]]:
    ours = list(replay(events, 7))
    theirs = list(
        reference.replay(
            [(reference.Event(e.time_s, e.customer, e.terminal, e.amount), y) for e, y in events],
            7,
        )
    )
    assert len(ours) == len(theirs) == len(events)
    for i, (x, y) in enumerate(zip(ours, theirs, strict=True)):
        assert bits(x) == bits(y), (i, events[i][0])
    return ours


@pytest.mark.parametrize("seed", [0, 1])
def test_handbook_data_gives_the_reference_features(seed: int) -> None:
    """The Handbook's process (the data the champion's AP and CP@100 were measured on),
    small: 2 terminals compromised a day among 500, so many terminals have known frauds
    sliding through their windows."""
    frame = validate(generate(HandbookConfig(customers=250, terminals=500, days=60, seed=seed)))
    rows = assert_replays_match(list(labelled(frame)))
    assert len(rows) > 25_000
    assert sum(x["terminal_frauds_30d"] > 0 for x in rows) > 1_000
    assert sum(x["terminal_frauds_recent"] > 0 for x in rows) > 1_000


def test_simulator_data_gives_the_reference_features() -> None:
    """The wallet simulator's scenarios (takeover, card testing bursts, compromised POS
    terminals and customers, structuring) over 40 days."""
    transactions = Simulator(ScenarioConfig(customers=150, merchants=10, seed=3)).transactions(40)
    frame = validate(to_frame(transactions, datetime(2026, 1, 1), seed=3))
    rows = assert_replays_match(list(labelled(frame)))
    assert sum(x["customer_nb_1h"] > 3 for x in rows) > 10  # bursts evict in the 1 h window


def adversarial(seed: int, count: int) -> list[tuple[str, Any]]:
    """Events out of time order (late by seconds to weeks), bursts past the event cap, long
    gaps, falling amounts (a long maxima deque), and labels for any day, inside the
    windows too: a script of ("event", Event) and ("label", (terminal, time, fraud))."""
    rng = random.Random(seed)
    now, script = 40 * DAY, []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.02:
            now += rng.randrange(5, 45) * DAY  # a long quiet spell
        elif roll < 0.10:
            for _ in range(rng.randrange(10, 60)):  # a burst, seconds apart
                now += rng.randrange(0, 30)
                script.append(("event", Event(now, "burst", f"t{rng.randrange(4)}", 1.0)))
        else:
            now += rng.randrange(0, 4 * 3600)
        late = rng.random() < 0.08
        time_s = now - rng.choice((1, 600, 5000, DAY, 3 * DAY, 20 * DAY)) if late else now
        customer = f"c{rng.randrange(5)}"
        amount = round(max(0.01, 500 - (now % (9 * DAY)) / 2000 + rng.uniform(-20, 20)), 2)
        script.append(("event", Event(time_s, customer, f"t{rng.randrange(6)}", amount)))
        if rng.random() < 0.3:
            day = now // DAY - rng.randrange(0, 45)
            label = (f"t{rng.randrange(6)}", day * DAY + rng.randrange(DAY), rng.random() < 0.7)
            script.append(("label", label))
    return script


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_odd_streams_give_the_reference_features_and_json(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Late events, the cap (small here, as in the stream's bound test), gaps, labels
    inside the windows: features after every event and both states' JSON after every
    change are the reference's."""
    for module in (engine_module, reference_module):
        monkeypatch.setattr(module, "CUSTOMER_EVENTS_MAX", 25)
    ours, theirs = FeatureEngine(7), reference.FeatureEngine(7)
    for kind, item in adversarial(seed, 4_000):
        if kind == "label":
            ours.apply_label(*item)
            theirs.apply_label(*item)
            continue
        event = item
        mirrored = reference.Event(event.time_s, event.customer, event.terminal, event.amount)
        assert bits(ours.features(event)) == bits(theirs.features(mirrored)), event
        ours.observe(event)
        theirs.observe(mirrored)
        customer = ours.customers[event.customer]
        assert text(customer.to_json()) == text(theirs.customers[event.customer].to_json())
        assert text(ours.terminals[event.terminal].to_json()) == text(
            theirs.terminals[event.terminal].to_json()
        )
    burst = ours.customers["burst"]
    assert [len(w) for w in burst.window_events()][-1] == 25  # the cap was reached
    assert len(burst.events) <= 2 * 2 * 25 + 64  # and the array's dead front was cut


def test_states_the_reference_wrote_restore_and_carry_on_identically() -> None:
    """The stream's tables hold JSON the reference wrote. Restored half way through the
    Handbook data, the new engine's features over the second half are those of the
    reference that never stopped, and the states it writes back are the reference's
    (so a rollback reads them too)."""
    frame = validate(generate(HandbookConfig(customers=200, terminals=400, days=60, seed=4)))
    events = list(labelled(frame))
    half = len(events) // 2
    theirs = reference.FeatureEngine(7)
    mirrored = [(reference.Event(e.time_s, e.customer, e.terminal, e.amount), y) for e, y in events]
    for _ in reference.replay(mirrored[:half], 7, theirs):
        pass
    ours = FeatureEngine(7)
    ours.customers = {
        c: CustomerState.from_json(roundtrip(s.to_json())) for c, s in theirs.customers.items()
    }
    ours.terminals = {
        t: TerminalState.from_json(roundtrip(s.to_json())) for t, s in theirs.terminals.items()
    }
    # Labels of the first half that fall due in the second, as replay would release them.
    delay_s = 7 * DAY
    last_s = events[half - 1][0].time_s
    pending = deque(
        [
            (e.time_s + delay_s, e.terminal, e.time_s, y)
            for e, y in events[:half]
            if e.time_s + delay_s > last_s
        ]
    )
    compared = 0
    for (event, is_fraud), (event_ref, _) in zip(events[half:], mirrored[half:], strict=True):
        while pending and pending[0][0] <= event.time_s:
            _, terminal, time_s, fraud = pending.popleft()
            ours.apply_label(terminal, time_s, fraud)
            theirs.apply_label(terminal, time_s, fraud)
        assert bits(ours.features(event)) == bits(theirs.features(event_ref)), event
        ours.observe(event)
        theirs.observe(event_ref)
        pending.append((event.time_s + delay_s, event.terminal, event.time_s, is_fraud))
        compared += 1
    assert compared > 10_000
    for customer, state in ours.customers.items():
        written = text(state.to_json())
        assert written == text(theirs.customers[customer].to_json())
        assert text(reference.CustomerState.from_json(json.loads(written)).to_json()) == written


#: A customer's value in the ``wallet-history`` table as the deque-based engine wrote it
#: (``features_reference``): five events, the last 90 minutes before ``LATER``.
STORED_BY_THE_REFERENCE = {
    "gaps": [3456000, 86400, 518400, 82800, 1800],
    "amounts": [40.0, 250.5, 12.25, 99.99, 5.0],
    "windows": [[3600, 2, 104.99], [86400, 3, 117.24], [604800, 4, 367.74], [2592000, 5, 407.74]],
    "maxima": [[3542400, 250.5], [4143600, 99.99], [4145400, 5.0]],
    "terminals": {"shop": 4145400, "atm": 3542400, "web": 4143600},
}
LATER = Event(4145400 + 2400, "alice", "atm", 30.0)


def test_a_stored_value_of_the_reference_restores() -> None:
    """Pinned, so the form stays readable even if the reference module goes: the value
    above (written by the reference, see the helper below) restores to the features the
    reference computes from it and is written back unchanged."""
    assert reference.CustomerState.from_json(STORED_BY_THE_REFERENCE).to_json() == (
        STORED_BY_THE_REFERENCE
    )
    state = CustomerState.from_json(roundtrip(STORED_BY_THE_REFERENCE))
    assert text(state.to_json()) == text(STORED_BY_THE_REFERENCE)
    ours, theirs = FeatureEngine(7), reference.FeatureEngine(7)
    ours.customers["alice"] = state
    theirs.customers["alice"] = reference.CustomerState.from_json(STORED_BY_THE_REFERENCE)
    x = ours.features(LATER)
    assert bits(x) == bits(
        theirs.features(reference.Event(LATER.time_s, "alice", "atm", LATER.amount))
    )
    # 40 min and 70 min ago: one event in the hour; 24 h 10 min ago: out of the day.
    assert x["customer_nb_1h"] == 2.0 and x["customer_nb_1d"] == 3.0
    assert x["customer_nb_30d"] == 6.0 and x["new_terminal"] == 0.0  # atm: 7 days ago
    assert x["customer_max_ratio_30d"] == 30.0 / 250.5


def stored_by_the_reference() -> dict[str, Any]:
    """How ``STORED_BY_THE_REFERENCE`` was made."""
    engine = reference.FeatureEngine(7)
    for time_s, terminal, amount in (
        (40 * DAY, "shop", 40.0),
        (41 * DAY, "atm", 250.5),
        (47 * DAY, "shop", 12.25),
        (47 * DAY + 82800, "web", 99.99),
        (47 * DAY + 84600, "shop", 5.0),
    ):
        engine.observe(reference.Event(time_s, "alice", terminal, amount))
    return engine.customers["alice"].to_json()


def test_the_pinned_value_is_what_the_reference_writes() -> None:
    assert text(stored_by_the_reference()) == text(STORED_BY_THE_REFERENCE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"windows": [[60, 1, 5.0], [86400, 2, 1.0], [604800, 3, 1.0], [1, 5, 1.0]]}, "windows of"),
        (
            {"windows": [[3600, 3, 5.0], [86400, 2, 104.99], [604800, 3, 1.0], [2592000, 5, 4.0]]},
            "not nested",
        ),
        ({"amounts": [1.0, 2.0]}, "amounts"),
        ({"maxima": [[1777000000, 5.0, 1.0]]}, "maxima"),
    ],
)
def test_a_malformed_stored_value_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CustomerState.from_json({**STORED_BY_THE_REFERENCE, **change})

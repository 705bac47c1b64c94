"""streams.customer_codec: the customer state's binary form gives the same features as the
live state and its JSON form, and stays 16 bytes per event."""

from __future__ import annotations

import random

import orjson
import pytest

from models.features import CustomerState, Event
from streams.customer_codec import decode_customer, encode_customer
from streams.features import StreamFeatures


def history(
    events: int, seed: int = 1, gaps: tuple[int, ...] = (5, 60, 600, 1_800, 40_000, 200_000)
) -> tuple[CustomerState, int]:
    rng, features = random.Random(seed), StreamFeatures()
    state, time_s = None, 1_780_000_000
    for _ in range(events):
        time_s += rng.choice(gaps)
        terminal = f"T{rng.randrange(40)}"
        state = features.observe(Event(time_s, "c", terminal, rng.uniform(1, 500)), state)
    assert state is not None
    return state, time_s


@pytest.mark.parametrize("events", [1, 20, 1000])
def test_the_binary_form_gives_the_features_of_the_live_state(events: int) -> None:
    state, time_s = history(events)
    binary = encode_customer(state)
    features = StreamFeatures()
    later = Event(time_s + 30, "c", "T3", 42.5)
    from_json = CustomerState.from_json(orjson.loads(orjson.dumps(state.to_json())))
    live = features.features(later, state, None)
    assert features.features(later, decode_customer(binary), None) == live
    assert features.features(later, from_json, None) == live
    decoded = decode_customer(binary)
    assert decoded.window_events() == state.window_events()
    assert decoded.terminals == state.terminals


def test_it_is_sixteen_bytes_an_event_and_smaller_than_json() -> None:
    state, _ = history(1000, gaps=(5, 60, 600, 1_800))
    binary = encode_customer(state)
    kept = (len(state.events) - state.start_month) // 2
    assert kept == 1000
    assert len(binary) < 16 * kept + 16 * len(state.maxima) // 2 + 2_000
    assert len(binary) < len(orjson.dumps(state.to_json()))


def test_another_format_version_is_refused() -> None:
    state, _ = history(3)
    with pytest.raises(ValueError, match="format"):
        decode_customer(b"\x09" + encode_customer(state)[1:])

"""The stream's features are the offline engine's: a request becomes the engine's event, and
state kept as JSON between requests (customer per wallet, terminal counts published with
a lag) gives exactly the features ``models.features.replay`` computes over the same events."""

from __future__ import annotations

import json
import random
import uuid
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal

import pytest

import models.features as engine_module
from domain.records import TransactionRequested
from domain.transactions import TransactionType
from models.features import (
    SECONDS_PER_DAY,
    CustomerState,
    Event,
    FeatureEngine,
    TerminalState,
    replay,
)
from streams.features import StreamFeatures, event_of, terminal_of

W, SHOP = uuid.uuid4(), uuid.uuid4()
AT = datetime(2026, 3, 5, 12, 30, 15, 999_000, tzinfo=UTC)
DAY = SECONDS_PER_DAY


def request(
    kind: TransactionType = TransactionType.PAYMENT,
    source: uuid.UUID | None = W,
    destination: uuid.UUID | None = SHOP,
    metadata: dict | None = None,
    amount: str = "12.34",
) -> TransactionRequested:
    return TransactionRequested(
        transaction_id=uuid.uuid4(),
        transaction_type=kind,
        source_wallet_id=source,
        destination_wallet_id=destination,
        amount=Decimal(amount),
        fee_amount=Decimal(0),
        total_amount=Decimal(amount),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key="k",
        metadata=metadata or {},
        requested_at=AT,
    )


def test_a_request_becomes_the_engines_event() -> None:
    payment = request(metadata={"channel": "POS", "terminal_id": "T-17"})
    assert event_of(payment) == Event(int(AT.timestamp()), str(W), "T-17", 12.34)
    assert event_of(payment).time_s == 1772713815  # whole seconds, UTC
    # No terminal: the payee wallet; no payee either: the channel; nothing: the type.
    assert terminal_of(request(metadata={"channel": "WEB"})) == str(SHOP)
    withdrawal = request(TransactionType.WITHDRAWAL, destination=None, metadata={"channel": "ATM"})
    assert terminal_of(withdrawal) == "ATM"
    assert terminal_of(request(TransactionType.WITHDRAWAL, destination=None)) == "WITHDRAWAL"
    # A deposit's customer is the wallet it is keyed by: the destination.
    deposit = request(TransactionType.DEPOSIT, source=None, destination=W)
    assert event_of(deposit).customer == str(W) and event_of(deposit).amount == 12.34


def roundtrip(value: object) -> object:
    """What a JSON state store does to a value: JSON out and back."""
    return json.loads(json.dumps(value))


def labelled_events(seed: int, count: int, customers: int, terminals: int) -> list[tuple]:
    rng = random.Random(seed)
    time_s, events = 40 * DAY, []
    for _ in range(count):
        time_s += rng.randrange(0, 5 * 3600)
        event = Event(
            time_s,
            f"c{rng.randrange(customers)}",
            f"t{rng.randrange(terminals)}",
            round(rng.lognormvariate(3, 1), 2),
        )
        events.append((event, rng.random() < 0.1))
    return events


def stream_features(
    events: list[tuple[Event, bool]], label_delay_days: int = 7
) -> list[dict[str, float]]:
    """The features as the stream computes them: per event, the customer restored from its
    JSON and saved again; terminal activity applied by the terminal side to its own JSON
    and published: a transaction one event late (the stream's lag), a fraud label when
    ``replay`` releases it (the stream counts one when it arrives: the label's own lag is
    the world's, not the stream's)."""
    features = StreamFeatures(label_delay_days)
    customers: dict[str, object] = {}
    terminal_table: dict[str, object] = {}
    published: dict[str, object] = {}
    lagging: deque[tuple[str, int, bool]] = deque()
    labels: deque[tuple[int, str, int]] = deque()
    delay_s = label_delay_days * DAY
    out = []

    def apply(terminal: str, time_s: int, fraud: bool) -> None:
        state = TerminalState.from_json(terminal_table.get(terminal))  # type: ignore[arg-type]
        if fraud:
            features.label_terminal(terminal, time_s, state)
        else:
            features.observe_terminal(terminal, time_s, state)
        terminal_table[terminal] = roundtrip(state.to_json())
        published[terminal] = roundtrip(state.to_json())

    for event, is_fraud in events:
        while labels and labels[0][0] <= event.time_s:
            _, terminal, time_s = labels.popleft()
            apply(terminal, time_s, True)
        stored = customers.get(event.customer)
        customer = None if stored is None else CustomerState.from_json(stored)  # type: ignore[arg-type]
        seen = published.get(event.terminal)
        terminal = None if seen is None else TerminalState.from_json(seen)  # type: ignore[arg-type]
        out.append(features.features(event, customer, terminal))
        while lagging:  # what reached the terminal side before this request's turn
            apply(*lagging.popleft())
        customers[event.customer] = roundtrip(features.observe(event, customer).to_json())
        lagging.append((event.terminal, event.time_s, False))
        if is_fraud:
            labels.append((event.time_s + delay_s, event.terminal, event.time_s))
    return out


def test_restored_state_gives_the_features_of_the_live_engine() -> None:
    events = labelled_events(seed=5, count=3000, customers=6, terminals=5)
    offline = list(replay(events, 7))
    assert stream_features(events) == offline  # exactly: not approximately
    frauds_known = [x["terminal_frauds_30d"] for x in offline]
    assert max(frauds_known) > 0 and offline[-1]["terminal_nb_30d"] > 0  # terminals counted


def test_restored_state_is_exact_at_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy customer fills the event cap and the terminal memory; its state stays
    bounded and still gives the live features."""
    monkeypatch.setattr(engine_module, "CUSTOMER_EVENTS_MAX", 40)
    rng = random.Random(11)
    events, time_s = [], 10 * DAY
    for _ in range(1500):
        time_s += rng.randrange(0, 3 * 3600)
        # Terminals drift: a few new each couple of days, so old ones go stale.
        terminal = f"t{time_s // (2 * DAY)}-{rng.randrange(3)}"
        events.append((Event(time_s, "busy", terminal, float(rng.randrange(1, 500))), False))
    assert events[-1][0].time_s - events[0][0].time_s > 60 * DAY
    assert stream_features(events) == list(replay(events, 7))
    live = FeatureEngine()
    for event, _ in events:
        live.observe(event)
    assert len(live.customers["busy"].terminals) > 40  # the engine keeps stale ones a while
    data = live.customers["busy"].to_json()
    assert len(data["amounts"]) == 40 and len(data["terminals"]) <= 40
    assert len(json.dumps(data)) < 4_000


def test_customer_json_is_compact_and_round_trips() -> None:
    live = FeatureEngine()
    for i in range(100):
        live.observe(Event(DAY + i * 3600, "c", f"t{i % 3}", 10.0 + i))
    state = live.customers["c"]
    again = CustomerState.from_json(roundtrip(state.to_json()))  # type: ignore[arg-type]
    assert again == state
    data = state.to_json()
    assert len(data["gaps"]) == len(data["amounts"]) == 100  # the events once, not per window
    assert CustomerState.from_json(None) == CustomerState()
    terminal = TerminalState({5: [3, 1], 6: [2, 0]})
    assert TerminalState.from_json(roundtrip(terminal.to_json())) == terminal  # type: ignore[arg-type]
    assert TerminalState.from_json(None) == TerminalState()

"""Fraud features, computed one event at a time from bounded per-entity state.

Built to run one event at a time as a stream would (bounded state, labels applied as they
arrive); offline, ``replay`` feeds it a labelled file with each label released
``label_delay`` after its transaction. The running stream computes the same features with
this engine (``streams/features.py``): a customer's and a terminal's state live in faust
tables between requests, as JSON (``CustomerState.to_json`` / ``TerminalState.to_json``),
and a state restored from its JSON gives exactly the features the live one gives.

Customer (payer) windows are exact rolling windows over the payer's recent events, capped
at ``CUSTOMER_EVENTS_MAX``. Terminal (counterparty) windows use daily buckets and end
``label_delay_days`` before today, as fraud labels arrive only that late (the Handbook's
terminal risk): a terminal's risk counts known frauds over all its transactions then.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

SECONDS_PER_DAY = 86_400
CUSTOMER_WINDOWS_DAYS = (1, 7, 30)
TERMINAL_WINDOWS_DAYS = (1, 7, 30)
CUSTOMER_EVENTS_MAX = 2_000
HOUR_S = 3_600
NIGHT_END_HOUR = 6


@dataclass(frozen=True)
class Event:
    """What a feature needs of one transaction; ``time_s`` counts seconds from any epoch
    whose midnight is a day boundary (UTC days in the live system)."""

    time_s: int
    customer: str
    terminal: str
    amount: float


@dataclass
class Window:
    """A rolling window over one entity's events: count and sum kept as events age out."""

    span_s: int
    events: deque[tuple[int, float]] = field(default_factory=deque)
    total: float = 0.0

    def advance(self, now_s: int) -> None:
        while self.events and now_s - self.events[0][0] >= self.span_s:
            self.total -= self.events.popleft()[1]
        if not self.events:
            self.total = 0.0  # no float residue once empty

    def add(self, time_s: int, amount: float) -> None:
        if len(self.events) >= CUSTOMER_EVENTS_MAX:
            self.total -= self.events.popleft()[1]
        self.events.append((time_s, amount))
        self.total += amount


@dataclass
class CustomerState:
    windows: list[Window] = field(
        default_factory=lambda: [
            Window(HOUR_S),
            *(Window(w * SECONDS_PER_DAY) for w in CUSTOMER_WINDOWS_DAYS),
        ]
    )
    #: Monotonic deque of (time, amount): the 30-day maximum in O(1).
    maxima: deque[tuple[int, float]] = field(default_factory=deque)
    #: terminal -> last time used; pruned to the 30-day window.
    terminals: dict[str, int] = field(default_factory=dict)

    def advance(self, now_s: int) -> None:
        for window in self.windows:
            window.advance(now_s)
        longest = max(CUSTOMER_WINDOWS_DAYS) * SECONDS_PER_DAY
        while self.maxima and now_s - self.maxima[0][0] >= longest:
            self.maxima.popleft()
        if len(self.terminals) > CUSTOMER_EVENTS_MAX:
            self.terminals = {t: s for t, s in self.terminals.items() if now_s - s < longest}

    def to_json(self) -> dict[str, Any]:
        """A compact JSON form (a faust table value): the events of the widest window once
        (times as gaps from the one before), each window as its span, how many of the
        newest events it holds and its running total (kept, not summed again, so a restored
        mean is the live one to the last bit), the running maxima, and the terminals.

        Terminals last used more than the longest window plus ``STALE_SLACK_S`` before the
        newest event are left out: they can no longer make ``new_terminal`` 0 (which looks
        back the longest window) even for a request that comes a little out of time order.
        Bounded: at most ``CUSTOMER_EVENTS_MAX`` events and as many terminals, the most
        recently used (the one way a restored state can differ from the live one: a
        customer with more distinct terminals than that in 31 days, returning to one of
        the oldest, sees it as new)."""
        widest = max(self.windows, key=lambda window: len(window.events))
        times = [time_s for time_s, _ in widest.events]
        newest = max([*times[-1:], *self.terminals.values()], default=0)
        stale_before = newest - max(CUSTOMER_WINDOWS_DAYS) * SECONDS_PER_DAY - STALE_SLACK_S
        terminals = {t: s for t, s in self.terminals.items() if s > stale_before}
        if len(terminals) > CUSTOMER_EVENTS_MAX:
            recent = sorted(terminals.items(), key=lambda item: item[1])[-CUSTOMER_EVENTS_MAX:]
            terminals = dict(recent)
        return {
            "gaps": [b - a for a, b in zip([0, *times], times, strict=False)],
            "amounts": [amount for _, amount in widest.events],
            "windows": [[w.span_s, len(w.events), w.total] for w in self.windows],
            "maxima": [list(pair) for pair in self.maxima],
            "terminals": terminals,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CustomerState:
        """The state ``to_json`` wrote; an empty one for None (a customer never seen)."""
        if not data:
            return cls()
        times = list(accumulate(data["gaps"]))[-CUSTOMER_EVENTS_MAX:]
        events = list(zip(times, data["amounts"][-CUSTOMER_EVENTS_MAX:], strict=True))
        windows = []
        for span_s, count, total in data["windows"]:
            kept = events[len(events) - count :] if count else []
            windows.append(Window(span_s, deque(kept), total))
        return cls(
            windows=windows,
            maxima=deque((time_s, amount) for time_s, amount in data["maxima"]),
            terminals=dict(data["terminals"]),
        )


#: How far out of time order a customer's request may come and still see a terminal it used
#: just over the longest window ago as used (see ``CustomerState.to_json``).
STALE_SLACK_S = SECONDS_PER_DAY


@dataclass
class TerminalState:
    #: day -> [transactions, known frauds]; at most the longest window plus the delay.
    days: dict[int, list[int]] = field(default_factory=dict)

    def to_json(self) -> list[list[int]]:
        """``[[day, transactions, known frauds], ...]``: a few dozen days at most."""
        return [[day, count, frauds] for day, (count, frauds) in self.days.items()]

    @classmethod
    def from_json(cls, data: list[list[int]] | None) -> TerminalState:
        return cls({int(day): [int(count), int(frauds)] for day, count, frauds in data or ()})


FEATURE_NAMES: tuple[str, ...] = (
    "amount",
    "log_amount",
    "hour",
    "is_night",
    "is_weekend",
    "customer_nb_1h",
    *(f"customer_nb_{w}d" for w in CUSTOMER_WINDOWS_DAYS),
    *(f"customer_avg_{w}d" for w in CUSTOMER_WINDOWS_DAYS),
    "customer_amount_ratio_30d",
    "customer_max_ratio_30d",
    "new_terminal",
    "customer_new",
    *(f"terminal_nb_{w}d" for w in TERMINAL_WINDOWS_DAYS),
    *(f"terminal_risk_{w}d" for w in TERMINAL_WINDOWS_DAYS),
    "terminal_frauds_30d",
    "terminal_days_since_fraud",
    "terminal_risk_since_fraud",
)
#: ``terminal_days_since_fraud`` when no fraud is known in the window.
NO_KNOWN_FRAUD_DAYS = 99.0
# Feature names built once: the engine runs per event, f-strings there cost microseconds.
_CUSTOMER_NAMES = tuple((f"customer_nb_{w}d", f"customer_avg_{w}d") for w in CUSTOMER_WINDOWS_DAYS)
_TERMINAL_NAMES = tuple(
    (w, f"terminal_nb_{w}d", f"terminal_risk_{w}d") for w in TERMINAL_WINDOWS_DAYS
)
_TERMINAL_LONGEST = max(TERMINAL_WINDOWS_DAYS)
_NO_TERMINAL: dict[str, float] = {
    **{name: 0.0 for _, nb, risk in _TERMINAL_NAMES for name in (nb, risk)},
    "terminal_frauds_30d": 0.0,
    "terminal_days_since_fraud": NO_KNOWN_FRAUD_DAYS,
    "terminal_risk_since_fraud": 0.0,
}


class FeatureEngine:
    def __init__(self, label_delay_days: int = 7) -> None:
        self.label_delay_days = label_delay_days
        self.customers: dict[str, CustomerState] = {}
        self.terminals: dict[str, TerminalState] = {}
        self._days_kept = max(TERMINAL_WINDOWS_DAYS) + label_delay_days + 1

    def features(self, event: Event) -> dict[str, float]:
        """The features of ``event`` given everything observed before it."""
        x = _time_features(event)
        x.update(self._customer_features(event))
        x.update(self._terminal_features(event))
        return x

    def observe(self, event: Event) -> None:
        """Add the event to its customer's and terminal's state (after scoring it)."""
        customer = self.customers.setdefault(event.customer, CustomerState())
        customer.advance(event.time_s)
        for window in customer.windows:
            window.add(event.time_s, event.amount)
        while customer.maxima and customer.maxima[-1][1] <= event.amount:
            customer.maxima.pop()
        customer.maxima.append((event.time_s, event.amount))
        customer.terminals[event.terminal] = event.time_s
        terminal = self.terminals.setdefault(event.terminal, TerminalState())
        day = event.time_s // SECONDS_PER_DAY
        bucket = terminal.days.get(day)
        if bucket is None:
            terminal.days[day] = [1, 0]
            for old in [d for d in terminal.days if d <= day - self._days_kept]:
                del terminal.days[old]
        else:
            bucket[0] += 1

    def apply_label(self, terminal_id: str, time_s: int, is_fraud: bool) -> None:
        """A label arrived for a transaction at this terminal (days after it happened)."""
        if not is_fraud:
            return
        bucket = self.terminals.get(terminal_id, TerminalState()).days.get(
            time_s // SECONDS_PER_DAY
        )
        if bucket is not None:
            bucket[1] += 1

    def _customer_features(self, event: Event) -> dict[str, float]:
        state = self.customers.get(event.customer)
        amount = event.amount
        if state is None:
            x = {"customer_nb_1h": 1.0}
            for nb_name, avg_name in _CUSTOMER_NAMES:
                x[nb_name] = 1.0
                x[avg_name] = amount
            x.update(
                customer_amount_ratio_30d=1.0,
                customer_max_ratio_30d=1.0,
                new_terminal=1.0,
                customer_new=1.0,
            )
            return x
        state.advance(event.time_s)
        hour, *days = state.windows
        x = {"customer_nb_1h": float(len(hour.events) + 1)}
        for (nb_name, avg_name), window in zip(_CUSTOMER_NAMES, days, strict=True):
            # Windows include the current transaction, as the Handbook's do.
            count = len(window.events) + 1
            x[nb_name] = float(count)
            x[avg_name] = (window.total + amount) / count
        longest = days[-1]
        previous = len(longest.events)
        x["customer_amount_ratio_30d"] = (
            amount * previous / longest.total if previous and longest.total > 0 else 1.0
        )
        top = state.maxima[0][1] if state.maxima else 0.0
        x["customer_max_ratio_30d"] = amount / top if top > 0 else 1.0
        x["new_terminal"] = float(
            event.terminal not in state.terminals
            or event.time_s - state.terminals[event.terminal] >= longest.span_s
        )
        x["customer_new"] = float(previous == 0)
        return x

    def _terminal_features(self, event: Event) -> dict[str, float]:
        """Counts and fraud shares over windows that end where labels are known.

        A compromised terminal stays compromised for weeks and every transaction there is
        fraudulent: so besides the window shares, how recently a fraud was known there and
        the fraud share since the earliest known fraud in the window say the most.
        """
        state = self.terminals.get(event.terminal)
        if state is None:
            return dict(_NO_TERMINAL)
        # Day ``last_known_day - age`` for age 1..longest: one pass over the (at most
        # longest + delay + 1) buckets, then running sums; windows nest.
        last_known_day = event.time_s // SECONDS_PER_DAY - self.label_delay_days
        transactions_by_age = [0] * (_TERMINAL_LONGEST + 1)
        frauds_by_age = [0] * (_TERMINAL_LONGEST + 1)
        for day, (count, known_frauds) in state.days.items():
            age = last_known_day - day
            if 0 < age <= _TERMINAL_LONGEST:
                transactions_by_age[age] = count
                frauds_by_age[age] = known_frauds
        transactions = list(accumulate(transactions_by_age))
        frauds = list(accumulate(frauds_by_age))
        x: dict[str, float] = {}
        for window, nb_name, risk_name in _TERMINAL_NAMES:
            x[nb_name] = float(transactions[window])
            x[risk_name] = frauds[window] / transactions[window] if transactions[window] else 0.0
        x["terminal_frauds_30d"] = float(frauds[_TERMINAL_LONGEST])
        if frauds[_TERMINAL_LONGEST]:
            ages = [age for age, known in enumerate(frauds_by_age) if known]
            oldest = ages[-1]  # the fraud share from the earliest known fraud up to now
            x["terminal_days_since_fraud"] = float(ages[0] - 1)
            x["terminal_risk_since_fraud"] = frauds[oldest] / transactions[oldest]
        else:
            x["terminal_days_since_fraud"] = NO_KNOWN_FRAUD_DAYS
            x["terminal_risk_since_fraud"] = 0.0
        return x


def _time_features(event: Event) -> dict[str, float]:
    seconds_of_day = event.time_s % SECONDS_PER_DAY
    hour = seconds_of_day // HOUR_S
    weekday = (event.time_s // SECONDS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday
    return {
        "amount": event.amount,
        "log_amount": math.log1p(max(event.amount, 0.0)),
        "hour": float(hour),
        "is_night": float(hour < NIGHT_END_HOUR),
        "is_weekend": float(weekday >= 5),
    }


def replay(
    events: Iterable[tuple[Event, bool]],
    label_delay_days: int = 7,
    engine: FeatureEngine | None = None,
) -> Iterator[dict[str, float]]:
    """Offline: the features of each event in time order, as the stream would have seen
    them, with each label released ``label_delay_days`` after its transaction."""
    engine = engine or FeatureEngine(label_delay_days)
    pending: deque[tuple[int, str, int, bool]] = deque()
    delay_s = label_delay_days * SECONDS_PER_DAY
    for event, is_fraud in events:
        while pending and pending[0][0] <= event.time_s:
            _, terminal, time_s, fraud = pending.popleft()
            engine.apply_label(terminal, time_s, fraud)
        yield engine.features(event)
        engine.observe(event)
        pending.append((event.time_s + delay_s, event.terminal, event.time_s, is_fraud))


def as_row(x: Mapping[str, float]) -> list[float]:
    """The features in ``FEATURE_NAMES`` order: the column order every model is fitted on."""
    return [x[name] for name in FEATURE_NAMES]

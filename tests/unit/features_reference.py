"""The feature engine as it was before its customer windows became flat arrays (main at
9e82573, ``models/features.py``, unchanged below this docstring): the reference the
rewritten engine must equal bit for bit (``test_features_identity.py``).

Why it is kept: the champion's quality figures (docs/models.md) were measured with this
code, and the stream restores customer states that this code wrote. Identical features
and an identical JSON form mean neither has to be measured or migrated again. It is test
code only; nothing outside the tests imports it.

Original docstring:

Fraud features, computed one event at a time from bounded per-entity state.

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


@dataclass(frozen=True, slots=True)
class Event:
    """What a feature needs of one transaction; ``time_s`` counts seconds from any epoch
    whose midnight is a day boundary (UTC days in the live system)."""

    time_s: int
    customer: str
    terminal: str
    amount: float


@dataclass(slots=True)
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


@dataclass(slots=True)
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


@dataclass(slots=True)
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
    "terminal_days_since_first_fraud",
    "terminal_frauds_recent",
)
#: ``terminal_days_since_fraud`` and ``..._first_fraud`` when no fraud is known in the window.
NO_KNOWN_FRAUD_DAYS = 99.0
if CUSTOMER_WINDOWS_DAYS != (1, 7, 30) or TERMINAL_WINDOWS_DAYS != (1, 7, 30):
    # FeatureEngine.features spells these windows out (no per-event loops over names).
    raise ImportError("FeatureEngine.features is written for windows of 1, 7 and 30 days")
_TERMINAL_LONGEST = max(TERMINAL_WINDOWS_DAYS)
_CUSTOMER_LONGEST_S = max(CUSTOMER_WINDOWS_DAYS) * SECONDS_PER_DAY
#: Beyond this many days since a terminal's sums were cached, they are walked afresh.
_TERMINAL_SLIDE_DAYS_MAX = 10
#: A terminal never seen: no transactions, no known fraud (``_terminal_values`` order).
_NO_TERMINAL_VALUES = (
    *(0.0,) * 7,
    NO_KNOWN_FRAUD_DAYS,
    0.0,
    NO_KNOWN_FRAUD_DAYS,
)


class FeatureEngine:
    """Per-event features from bounded state; the hot path of the stream's scoring.

    Written for the per-event budget (bench/scoring): scalar loops instead of temporary
    lists, the feature dict built as one literal, and each terminal's window aggregates
    cached until its known-labels edge moves or its windowed buckets change (a busy
    terminal is walked once a day, not once an event).
    """

    def __init__(self, label_delay_days: int = 7) -> None:
        self.label_delay_days = label_delay_days
        self.customers: dict[str, CustomerState] = {}
        self.terminals: dict[str, TerminalState] = {}
        self._days_kept = max(TERMINAL_WINDOWS_DAYS) + label_delay_days + 1
        #: terminal -> its window sums and features at a last known day: at most one entry
        #: per known terminal, slid day by day, dropped when a bucket in its window changes.
        self._terminal_cache: dict[str, _TerminalSums] = {}

    def features(self, event: Event) -> dict[str, float]:
        """The features of ``event`` given everything observed before it."""
        time_s = event.time_s
        amount = event.amount
        seconds_of_day = time_s % SECONDS_PER_DAY
        hour = seconds_of_day // HOUR_S
        weekday = (time_s // SECONDS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday
        state = self.customers.get(event.customer)
        if state is None:
            nb_1h = nb_1d = nb_7d = nb_30d = 1.0
            avg_1d = avg_7d = avg_30d = amount
            amount_ratio = max_ratio = new_terminal = customer_new = 1.0
        else:
            _advance_customer(state, time_s)
            hour_window, day_window, week_window, month_window = state.windows
            nb_1h = float(len(hour_window.events) + 1)
            # Windows include the current transaction, as the Handbook's do.
            count = len(day_window.events) + 1
            nb_1d = float(count)
            avg_1d = (day_window.total + amount) / count
            count = len(week_window.events) + 1
            nb_7d = float(count)
            avg_7d = (week_window.total + amount) / count
            previous = len(month_window.events)
            count = previous + 1
            nb_30d = float(count)
            month_total = month_window.total
            avg_30d = (month_total + amount) / count
            amount_ratio = amount * previous / month_total if previous and month_total > 0 else 1.0
            top = state.maxima[0][1] if state.maxima else 0.0
            max_ratio = amount / top if top > 0 else 1.0
            last_seen = state.terminals.get(event.terminal)
            new_terminal = float(last_seen is None or time_s - last_seen >= month_window.span_s)
            customer_new = float(previous == 0)
        (
            t_nb_1d,
            t_nb_7d,
            t_nb_30d,
            t_risk_1d,
            t_risk_7d,
            t_risk_30d,
            t_frauds_30d,
            t_days_since_fraud,
            t_risk_since_fraud,
            t_days_since_first_fraud,
        ) = self._terminal_values(event.terminal, time_s)
        return {
            "amount": amount,
            "log_amount": math.log1p(max(amount, 0.0)),
            "hour": float(hour),
            "is_night": float(hour < NIGHT_END_HOUR),
            "is_weekend": float(weekday >= 5),
            "customer_nb_1h": nb_1h,
            "customer_nb_1d": nb_1d,
            "customer_nb_7d": nb_7d,
            "customer_nb_30d": nb_30d,
            "customer_avg_1d": avg_1d,
            "customer_avg_7d": avg_7d,
            "customer_avg_30d": avg_30d,
            "customer_amount_ratio_30d": amount_ratio,
            "customer_max_ratio_30d": max_ratio,
            "new_terminal": new_terminal,
            "customer_new": customer_new,
            "terminal_nb_1d": t_nb_1d,
            "terminal_nb_7d": t_nb_7d,
            "terminal_nb_30d": t_nb_30d,
            "terminal_risk_1d": t_risk_1d,
            "terminal_risk_7d": t_risk_7d,
            "terminal_risk_30d": t_risk_30d,
            "terminal_frauds_30d": t_frauds_30d,
            "terminal_days_since_fraud": t_days_since_fraud,
            "terminal_risk_since_fraud": t_risk_since_fraud,
            "terminal_days_since_first_fraud": t_days_since_first_fraud,
            "terminal_frauds_recent": self._recent_frauds(event.terminal, time_s),
        }

    def observe(self, event: Event) -> None:
        """Add the event to its customer's and terminal's state (after scoring it)."""
        time_s = event.time_s
        amount = event.amount
        customer = self.customers.get(event.customer)
        if customer is None:
            customer = self.customers[event.customer] = CustomerState()
        else:
            _advance_customer(customer, time_s)
        entry = (time_s, amount)
        for window in customer.windows:
            events = window.events
            if len(events) >= CUSTOMER_EVENTS_MAX:
                window.total -= events.popleft()[1]
            events.append(entry)
            window.total += amount
        maxima = customer.maxima
        while maxima and maxima[-1][1] <= amount:
            maxima.pop()
        maxima.append(entry)
        customer.terminals[event.terminal] = time_s
        terminal_id = event.terminal
        terminal = self.terminals.get(terminal_id)
        if terminal is None:
            terminal = self.terminals[terminal_id] = TerminalState()
        day = time_s // SECONDS_PER_DAY
        days = terminal.days
        bucket = days.get(day)
        if bucket is None:
            days[day] = [1, 0]
            self._bucket_changed(terminal_id, day)
            oldest_kept = day - self._days_kept
            for old in [d for d in days if d <= oldest_kept]:
                del days[old]
                self._bucket_changed(terminal_id, old)
        else:
            bucket[0] += 1
            self._bucket_changed(terminal_id, day)

    def apply_label(self, terminal_id: str, time_s: int, is_fraud: bool) -> None:
        """A label arrived for a transaction at this terminal (days after it happened)."""
        if not is_fraud:
            return
        state = self.terminals.get(terminal_id)
        if state is None:
            return
        day = time_s // SECONDS_PER_DAY
        bucket = state.days.get(day)
        if bucket is not None:
            bucket[1] += 1
            self._bucket_changed(terminal_id, day)

    def _bucket_changed(self, terminal_id: str, day: int) -> None:
        """Drop the terminal's cached sums if ``day`` lies in their window (days after the
        window are read when the window slides onto them)."""
        cached = self._terminal_cache.get(terminal_id)
        if cached is not None and 0 < cached.last_known_day - day <= _TERMINAL_LONGEST:
            del self._terminal_cache[terminal_id]

    def _terminal_values(self, terminal_id: str, time_s: int) -> tuple[float, ...]:
        """Counts and fraud shares over windows that end where labels are known.

        A compromised terminal stays compromised for weeks and every transaction there is
        fraudulent: so besides the window shares, how recently a fraud was known there and
        the fraud share since the earliest known fraud in the window say the most; and how
        long ago that earliest one was, since a compromise found weeks ago may be over by
        now (the Handbook's last 28 days) while the labels that would show it are not in.

        Window ``w`` is the days ``last_known_day - w`` to ``last_known_day - 1``. The sums
        are cached per terminal and slid a day at a time (three bucket look-ups a day)
        rather than re-walked over every bucket: a walk touches some 40 scattered objects,
        and those cache misses were most of an event's time. Terminals with a known fraud
        in the window are walked, for the fraud's age and the share since.
        """
        state = self.terminals.get(terminal_id)
        if state is None:
            return _NO_TERMINAL_VALUES
        last_known_day = time_s // SECONDS_PER_DAY - self.label_delay_days
        cached = self._terminal_cache.get(terminal_id)
        if cached is not None and cached.state is state:
            gap = last_known_day - cached.last_known_day
            if gap == 0:
                return cached.values
            if 0 < gap <= _TERMINAL_SLIDE_DAYS_MAX:
                return self._slide(cached, last_known_day)
        return self._walk(terminal_id, state, last_known_day)

    def _recent_frauds(self, terminal_id: str, time_s: int) -> float:
        """Frauds known at the terminal for the days the windows do not cover yet: from
        the last known day (labels of its first hours are in by now) to today (a label
        that came early). A compromise is seen here a day before the windows show it."""
        state = self.terminals.get(terminal_id)
        if state is None:
            return 0.0
        days = state.days
        today = time_s // SECONDS_PER_DAY
        known = 0
        for day in range(today - self.label_delay_days, today + 1):
            bucket = days.get(day)
            if bucket is not None:
                known += bucket[1]
        return float(known)

    def _slide(self, sums: _TerminalSums, last_known_day: int) -> tuple[float, ...]:
        days = sums.state.days
        nb_1, frauds_1 = sums.nb_1, sums.frauds_1
        nb_7, frauds_7, nb_30, frauds_30 = sums.nb_7, sums.frauds_7, sums.nb_30, sums.frauds_30
        for newest in range(sums.last_known_day, last_known_day):
            entering = days.get(newest)  # its age becomes 1
            if entering is None:
                nb_1 = frauds_1 = 0
            else:
                nb_1, frauds_1 = entering
                nb_7 += nb_1
                frauds_7 += frauds_1
                nb_30 += nb_1
                frauds_30 += frauds_1
            leaving = days.get(newest - 7)
            if leaving is not None:
                nb_7 -= leaving[0]
                frauds_7 -= leaving[1]
            leaving = days.get(newest - _TERMINAL_LONGEST)
            if leaving is not None:
                nb_30 -= leaving[0]
                frauds_30 -= leaving[1]
        if frauds_30:
            return self._walk(sums.terminal_id, sums.state, last_known_day)
        sums.last_known_day = last_known_day
        sums.nb_1, sums.frauds_1, sums.nb_7, sums.frauds_7 = nb_1, frauds_1, nb_7, frauds_7
        sums.nb_30, sums.frauds_30 = nb_30, frauds_30
        sums.values = _terminal_features(
            nb_1,
            frauds_1,
            nb_7,
            frauds_7,
            nb_30,
            frauds_30,
            NO_KNOWN_FRAUD_DAYS,
            0.0,
            NO_KNOWN_FRAUD_DAYS,
        )
        return sums.values

    def _walk(
        self, terminal_id: str, state: TerminalState, last_known_day: int
    ) -> tuple[float, ...]:
        """Day ``last_known_day - age`` for age 1..longest: one pass over the (at most
        longest + delay + 1) buckets with running sums, a second only where frauds are
        known."""
        nb_1 = nb_7 = nb_30 = frauds_1 = frauds_7 = frauds_30 = 0
        youngest_fraud, oldest_fraud = _TERMINAL_LONGEST + 1, 0
        for day, (count, known_frauds) in state.days.items():
            age = last_known_day - day
            if 0 < age <= _TERMINAL_LONGEST:
                nb_30 += count
                if known_frauds:
                    frauds_30 += known_frauds
                    if age < youngest_fraud:
                        youngest_fraud = age
                    if age > oldest_fraud:
                        oldest_fraud = age
                if age <= 7:
                    nb_7 += count
                    frauds_7 += known_frauds
                    if age == 1:
                        nb_1, frauds_1 = count, known_frauds
        if frauds_30:
            # the fraud share from the earliest known fraud up to now
            since = 0
            for day, (count, _) in state.days.items():
                if 0 < last_known_day - day <= oldest_fraud:
                    since += count
            days_since_fraud = float(youngest_fraud - 1)
            risk_since_fraud = frauds_30 / since
            days_since_first_fraud = float(oldest_fraud - 1)
        else:
            days_since_fraud, risk_since_fraud = NO_KNOWN_FRAUD_DAYS, 0.0
            days_since_first_fraud = NO_KNOWN_FRAUD_DAYS
        values = _terminal_features(
            nb_1,
            frauds_1,
            nb_7,
            frauds_7,
            nb_30,
            frauds_30,
            days_since_fraud,
            risk_since_fraud,
            days_since_first_fraud,
        )
        self._terminal_cache[terminal_id] = _TerminalSums(
            terminal_id,
            state,
            last_known_day,
            (nb_1, frauds_1, nb_7, frauds_7, nb_30, frauds_30),
            values,
        )
        return values


class _TerminalSums:
    """One terminal's window sums and features as of ``last_known_day`` (the engine's
    cache; ``state`` is the TerminalState they were read from)."""

    __slots__ = (
        "terminal_id",
        "state",
        "last_known_day",
        "nb_1",
        "frauds_1",
        "nb_7",
        "frauds_7",
        "nb_30",
        "frauds_30",
        "values",
    )

    def __init__(
        self,
        terminal_id: str,
        state: TerminalState,
        last_known_day: int,
        sums: tuple[int, int, int, int, int, int],
        values: tuple[float, ...],
    ) -> None:
        self.terminal_id = terminal_id
        self.state = state
        self.last_known_day = last_known_day
        self.nb_1, self.frauds_1, self.nb_7, self.frauds_7, self.nb_30, self.frauds_30 = sums
        self.values = values


def _terminal_features(
    nb_1: int,
    frauds_1: int,
    nb_7: int,
    frauds_7: int,
    nb_30: int,
    frauds_30: int,
    days_since_fraud: float,
    risk_since_fraud: float,
    days_since_first_fraud: float,
) -> tuple[float, ...]:
    return (
        float(nb_1),
        float(nb_7),
        float(nb_30),
        frauds_1 / nb_1 if nb_1 else 0.0,
        frauds_7 / nb_7 if nb_7 else 0.0,
        frauds_30 / nb_30 if nb_30 else 0.0,
        float(frauds_30),
        days_since_fraud,
        risk_since_fraud,
        days_since_first_fraud,
    )


def _advance_customer(state: CustomerState, now_s: int) -> None:
    """``CustomerState.advance`` inlined: the same pops in the same order, no calls."""
    for window in state.windows:
        events = window.events
        if events:
            if now_s - events[0][0] >= window.span_s:
                span_s = window.span_s
                while events and now_s - events[0][0] >= span_s:
                    window.total -= events.popleft()[1]
                if not events:
                    window.total = 0.0  # no float residue once empty
        else:
            window.total = 0.0
    maxima = state.maxima
    while maxima and now_s - maxima[0][0] >= _CUSTOMER_LONGEST_S:
        maxima.popleft()
    if len(state.terminals) > CUSTOMER_EVENTS_MAX:
        state.terminals = {
            t: s for t, s in state.terminals.items() if now_s - s < _CUSTOMER_LONGEST_S
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

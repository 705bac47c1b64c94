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
from array import array
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


#: The customer windows' spans in seconds, in ``CustomerState``'s (and its JSON's) order.
CUSTOMER_SPANS_S = (HOUR_S, *(w * SECONDS_PER_DAY for w in CUSTOMER_WINDOWS_DAYS))
#: Dead room (in array items) at the front of a customer's event array before it is cut.
_COMPACT_AT = 64


class CustomerState:
    """A customer's recent events and its four windows (1 h, 1 d, 7 d, 30 d) over them.

    The events live once, in one flat ``array('d')`` of ``time, amount`` pairs (times are
    whole seconds, exact in a double), oldest first. A window is always a suffix of that
    sequence (it drops events from its oldest end only, and a shorter window drops at
    least what a longer one does), so each window is just the index where it starts and
    its running total; the 30-day window, the longest, starts at the array's live head.
    Why not a deque of ``(time, amount)`` tuples per window, as before: each tuple, its
    int and its float are separate objects, so a window check touched three or four
    scattered cache lines and every event left a tracked tuple behind; here a check reads
    one double next to its amount and an event allocates nothing that outlives the call.

    The totals are kept exactly as the deques kept them (the amount added on arrival,
    subtracted when it leaves, reset to 0.0 once a window is empty), so the features are
    the same to the last bit. ``maxima`` is the monotonic deque of ``(time, amount)`` for
    the 30-day maximum, flat in the same way from ``maxima_head`` on.
    """

    __slots__ = (
        "events",
        "start_hour",
        "start_day",
        "start_week",
        "start_month",
        "total_hour",
        "total_day",
        "total_week",
        "total_month",
        "maxima",
        "maxima_head",
        "terminals",
    )

    def __init__(self) -> None:
        self.events = array("d")
        self.start_hour = self.start_day = self.start_week = self.start_month = 0
        self.total_hour = self.total_day = self.total_week = self.total_month = 0.0
        self.maxima = array("d")
        self.maxima_head = 0
        #: terminal -> last time used; pruned to the 30-day window.
        self.terminals: dict[str, int] = {}

    def advance(self, now_s: int) -> None:
        """Drop what has left each window by ``now_s`` (see ``_advance_customer``)."""
        _advance_customer(self, now_s)

    def window_events(self) -> list[list[tuple[int, float]]]:
        """Each window's ``(time, amount)`` events, oldest first, in ``CUSTOMER_SPANS_S``
        order (for tests and inspection, not the hot path)."""
        events = self.events
        return [
            [(int(events[i]), events[i + 1]) for i in range(start, len(events), 2)]
            for start in self._starts()
        ]

    def _starts(self) -> tuple[int, int, int, int]:
        return (self.start_hour, self.start_day, self.start_week, self.start_month)

    def _totals(self) -> tuple[float, float, float, float]:
        return (self.total_hour, self.total_day, self.total_week, self.total_month)

    def _maxima_pairs(self) -> list[list[int | float]]:
        maxima = self.maxima
        return [[int(maxima[i]), maxima[i + 1]] for i in range(self.maxima_head, len(maxima), 2)]

    def __eq__(self, other: object) -> bool:
        """Equal when they hold the same events, windows, totals, maxima and terminals
        (wherever the arrays' dead room happens to end)."""
        if not isinstance(other, CustomerState):
            return NotImplemented
        return (
            self.window_events() == other.window_events()
            and self._totals() == other._totals()
            and self._maxima_pairs() == other._maxima_pairs()
            and self.terminals == other.terminals
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        counts = [(len(self.events) - start) // 2 for start in self._starts()]
        return f"CustomerState(window counts {counts}, {len(self.terminals)} terminals)"

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
        the oldest, sees it as new).

        The same form, key for key, as the deque-based state wrote before the flat arrays:
        states stored by either restore in the other."""
        events = self.events
        end = len(events)
        head = self.start_month
        times = [int(t) for t in events[head:end:2]]
        newest = max([*times[-1:], *self.terminals.values()], default=0)
        stale_before = newest - _CUSTOMER_LONGEST_S - STALE_SLACK_S
        terminals = {t: s for t, s in self.terminals.items() if s > stale_before}
        if len(terminals) > CUSTOMER_EVENTS_MAX:
            recent = sorted(terminals.items(), key=lambda item: item[1])[-CUSTOMER_EVENTS_MAX:]
            terminals = dict(recent)
        return {
            "gaps": [b - a for a, b in zip([0, *times], times, strict=False)],
            "amounts": events[head + 1 : end : 2].tolist(),
            "windows": [
                [span_s, (end - start) // 2, total]
                for span_s, start, total in zip(
                    CUSTOMER_SPANS_S, self._starts(), self._totals(), strict=True
                )
            ],
            "maxima": self._maxima_pairs(),
            "terminals": terminals,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> CustomerState:
        """The state ``to_json`` wrote (or the deque-based state wrote before it: the same
        form); an empty one for None (a customer never seen). A value whose windows are
        not this engine's, or do not fit its events, is refused with ValueError."""
        state = cls()
        if not data:
            return state
        times = list(accumulate(data["gaps"]))[-CUSTOMER_EVENTS_MAX:]
        amounts = data["amounts"][-CUSTOMER_EVENTS_MAX:]
        if len(times) != len(amounts):
            raise ValueError(
                f"customer state has {len(times)} event times but {len(amounts)} amounts"
            )
        windows = data["windows"]
        spans = tuple(span_s for span_s, _, _ in windows)
        if spans != CUSTOMER_SPANS_S:
            raise ValueError(
                f"customer state has windows of {list(spans)} s, this engine keeps "
                f"{list(CUSTOMER_SPANS_S)} s"
            )
        counts = [int(count) for _, count, _ in windows]
        if not 0 <= counts[0] <= counts[1] <= counts[2] <= counts[3] <= len(times):
            raise ValueError(
                f"customer state's window counts {counts} are not nested suffixes of its "
                f"{len(times)} events"
            )
        kept = counts[3]  # events before the longest window's are in no window
        # Interleaved by slice assignment, not appended pair by pair: the stream decodes a
        # customer's state for every request, and the loop was most of that time.
        interleaved: list[float] = [0.0] * (2 * kept)
        if kept:
            interleaved[0::2] = times[len(times) - kept :]
            interleaved[1::2] = amounts[len(amounts) - kept :]
        flat = state.events = array("d", interleaved)
        end = len(flat)
        state.start_hour, state.start_day, state.start_week, state.start_month = (
            end - 2 * count for count in counts
        )
        (
            state.total_hour,
            state.total_day,
            state.total_week,
            state.total_month,
        ) = (total for _, _, total in windows)
        pairs = data["maxima"]
        state.maxima = array("d", [value for pair in pairs for value in pair])
        if len(state.maxima) != 2 * len(pairs):
            raise ValueError("customer state's maxima are not (time, amount) pairs")
        state.terminals = dict(data["terminals"])
        return state


#: How far out of time order a customer's request may come and still see a terminal it used
#: just over the longest window ago as used (see ``CustomerState.to_json``).
STALE_SLACK_S = SECONDS_PER_DAY


@dataclass(slots=True)
class TerminalState:
    #: day -> [transactions, known frauds]; at most the longest window plus the delay.
    days: dict[int, list[int]] = field(default_factory=dict)
    #: The known frauds over all of ``days`` (derived, not stored): 0 for nearly every
    #: terminal, and then ``terminal_frauds_recent`` needs no look-ups. The engine keeps it
    #: as it counts a label or drops a day; code that edits ``days`` itself calls
    #: ``recount``.
    known_frauds: int = field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.recount()

    def recount(self) -> None:
        self.known_frauds = sum(frauds for _, frauds in self.days.values())

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
_DAY_S, _WEEK_S = SECONDS_PER_DAY, 7 * SECONDS_PER_DAY
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

    Written for the per-event budget (bench/scoring, p99 <= 100 us with the score):
    customer windows as indices into one flat array of the customer's events (a check is
    a compare, an event allocates nothing that lives on), the feature dict built as one
    literal, and each terminal's window aggregates, known frauds included, cached and slid
    a day at a time until a bucket inside the window changes (a late event or label);
    only then is the terminal walked again.
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
            events = state.events
            end = len(events)
            # Windows include the current transaction, as the Handbook's do.
            nb_1h = float(((end - state.start_hour) >> 1) + 1)
            count = ((end - state.start_day) >> 1) + 1
            nb_1d = float(count)
            avg_1d = (state.total_day + amount) / count
            count = ((end - state.start_week) >> 1) + 1
            nb_7d = float(count)
            avg_7d = (state.total_week + amount) / count
            previous = (end - state.start_month) >> 1
            count = previous + 1
            nb_30d = float(count)
            month_total = state.total_month
            avg_30d = (month_total + amount) / count
            amount_ratio = amount * previous / month_total if previous and month_total > 0 else 1.0
            maxima = state.maxima
            head = state.maxima_head
            top = maxima[head + 1] if head < len(maxima) else 0.0
            max_ratio = amount / top if top > 0 else 1.0
            last_seen = state.terminals.get(event.terminal)
            new_terminal = float(last_seen is None or time_s - last_seen >= _CUSTOMER_LONGEST_S)
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
        _add_customer_event(customer, time_s, amount)
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
                terminal.known_frauds -= days.pop(old)[1]
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
            state.known_frauds += 1
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
        if state is None or not state.known_frauds:
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
        """Move the cached window on to ``last_known_day`` a day at a time: the day that
        enters (age 1) adds its counts, the days that reach age 8 and 31 leave the 7- and
        30-day sums. The known-fraud days in the window (``fraud_days``, oldest first) and
        the transactions since the oldest of them (``since``) move with it, so a terminal
        with known frauds slides as cheaply as one without (it used to be walked whole
        every day: most of the slowest events). Integer sums, so the features are the
        walk's exactly."""
        days = sums.state.days
        nb_1, frauds_1 = sums.nb_1, sums.frauds_1
        nb_7, frauds_7, nb_30, frauds_30 = sums.nb_7, sums.frauds_7, sums.nb_30, sums.frauds_30
        fraud_days, since = sums.fraud_days, sums.since
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
                if frauds_1:
                    fraud_days.append(newest)
                if fraud_days:
                    since += nb_1
            leaving = days.get(newest - 7)
            if leaving is not None:
                nb_7 -= leaving[0]
                frauds_7 -= leaving[1]
            leaving_day = newest - _TERMINAL_LONGEST
            leaving = days.get(leaving_day)
            if leaving is not None:
                nb_30 -= leaving[0]
                frauds_30 -= leaving[1]
                if fraud_days and fraud_days[0] == leaving_day:
                    del fraud_days[0]
                    if fraud_days:  # the days before the next known fraud leave "since"
                        for day in range(leaving_day, fraud_days[0]):
                            bucket = days.get(day)
                            if bucket is not None:
                                since -= bucket[0]
                    else:
                        since = 0
        sums.last_known_day = last_known_day
        sums.nb_1, sums.frauds_1, sums.nb_7, sums.frauds_7 = nb_1, frauds_1, nb_7, frauds_7
        sums.nb_30, sums.frauds_30, sums.since = nb_30, frauds_30, since
        if fraud_days:
            sums.values = _terminal_features(
                nb_1,
                frauds_1,
                nb_7,
                frauds_7,
                nb_30,
                frauds_30,
                float(last_known_day - fraud_days[-1] - 1),
                frauds_30 / since,
                float(last_known_day - fraud_days[0] - 1),
            )
        else:
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
        known; the result is cached for ``_slide``."""
        nb_1 = nb_7 = nb_30 = frauds_1 = frauds_7 = frauds_30 = 0
        fraud_days: list[int] = []
        for day, (count, known_frauds) in state.days.items():
            age = last_known_day - day
            if 0 < age <= _TERMINAL_LONGEST:
                nb_30 += count
                if known_frauds:
                    frauds_30 += known_frauds
                    fraud_days.append(day)
                if age <= 7:
                    nb_7 += count
                    frauds_7 += known_frauds
                    if age == 1:
                        nb_1, frauds_1 = count, known_frauds
        since = 0
        if fraud_days:
            fraud_days.sort()
            # the fraud share from the earliest known fraud up to now
            oldest_fraud = last_known_day - fraud_days[0]
            for day, (count, _) in state.days.items():
                if 0 < last_known_day - day <= oldest_fraud:
                    since += count
            days_since_fraud = float(last_known_day - fraud_days[-1] - 1)
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
            fraud_days,
            since,
            values,
        )
        return values


class _TerminalSums:
    """One terminal's window sums and features as of ``last_known_day`` (the engine's
    cache; ``state`` is the TerminalState they were read from): ``fraud_days`` are the
    window's days with known frauds, oldest first, and ``since`` the transactions from the
    oldest of them to the window's end."""

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
        "fraud_days",
        "since",
        "values",
    )

    def __init__(
        self,
        terminal_id: str,
        state: TerminalState,
        last_known_day: int,
        sums: tuple[int, int, int, int, int, int],
        fraud_days: list[int],
        since: int,
        values: tuple[float, ...],
    ) -> None:
        self.terminal_id = terminal_id
        self.state = state
        self.last_known_day = last_known_day
        self.nb_1, self.frauds_1, self.nb_7, self.frauds_7, self.nb_30, self.frauds_30 = sums
        self.fraud_days = fraud_days
        self.since = since
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
    """Drop the events that have left each window by ``now_s``, oldest first, exactly as
    the per-window deques popped them (a window whose oldest event is still inside keeps
    everything after it, even an older event that came out of time order); the expired
    head of the maxima; and, past the bound, the terminals unused for the longest window.

    The common case is four compares of a time against ``now_s``: only a window whose
    oldest event has expired walks (``_evict``)."""
    events = state.events
    end = len(events)
    start = state.start_hour
    if start == end:
        state.total_hour = 0.0
    elif now_s - events[start] >= HOUR_S:
        state.start_hour, state.total_hour = _evict(events, start, state.total_hour, now_s, HOUR_S)
    start = state.start_day
    if start == end:
        state.total_day = 0.0
    elif now_s - events[start] >= _DAY_S:
        state.start_day, state.total_day = _evict(events, start, state.total_day, now_s, _DAY_S)
    start = state.start_week
    if start == end:
        state.total_week = 0.0
    elif now_s - events[start] >= _WEEK_S:
        state.start_week, state.total_week = _evict(events, start, state.total_week, now_s, _WEEK_S)
    start = state.start_month
    if start == end:
        state.total_month = 0.0
    elif now_s - events[start] >= _CUSTOMER_LONGEST_S:
        state.start_month, state.total_month = _evict(
            events, start, state.total_month, now_s, _CUSTOMER_LONGEST_S
        )
    maxima = state.maxima
    head = state.maxima_head
    size = len(maxima)
    if head < size and now_s - maxima[head] >= _CUSTOMER_LONGEST_S:
        head += 2
        while head < size and now_s - maxima[head] >= _CUSTOMER_LONGEST_S:
            head += 2
        if head == size:
            del maxima[:]
            head = 0
        state.maxima_head = head
    if len(state.terminals) > CUSTOMER_EVENTS_MAX:
        state.terminals = {
            t: s for t, s in state.terminals.items() if now_s - s < _CUSTOMER_LONGEST_S
        }


def _evict(
    events: array[float], start: int, total: float, now_s: int, span_s: int
) -> tuple[int, float]:
    """One window's new start and total after dropping its events older than ``span_s``:
    each amount subtracted in turn (the deques' arithmetic, so the same float), and 0.0
    once the window is empty (no residue)."""
    end = len(events)
    while start < end and now_s - events[start] >= span_s:
        total -= events[start + 1]
        start += 2
    return start, (total if start < end else 0.0)


def _add_customer_event(state: CustomerState, time_s: int, amount: float) -> None:
    """Append an event to every window (a window already at ``CUSTOMER_EVENTS_MAX`` drops
    its oldest first, as the deques did) and to the maxima; then cut the dead room at the
    arrays' front once it is as long as what is kept (amortised O(1), bounded memory)."""
    events = state.events
    end = len(events)
    cap = 2 * CUSTOMER_EVENTS_MAX
    if end - state.start_month >= cap:  # the longest window is full; shorter ones may be
        if end - state.start_hour >= cap:
            state.total_hour -= events[state.start_hour + 1]
            state.start_hour += 2
        if end - state.start_day >= cap:
            state.total_day -= events[state.start_day + 1]
            state.start_day += 2
        if end - state.start_week >= cap:
            state.total_week -= events[state.start_week + 1]
            state.start_week += 2
        state.total_month -= events[state.start_month + 1]
        state.start_month += 2
    events.append(time_s)
    events.append(amount)
    state.total_hour += amount
    state.total_day += amount
    state.total_week += amount
    state.total_month += amount
    head = state.start_month
    if head >= _COMPACT_AT and 2 * head >= end:
        del events[:head]
        state.start_hour -= head
        state.start_day -= head
        state.start_week -= head
        state.start_month = 0
    maxima = state.maxima
    head = state.maxima_head
    size = len(maxima)
    while size > head and maxima[size - 1] <= amount:
        size -= 2
    if size < len(maxima):
        del maxima[size:]
    maxima.append(time_s)
    maxima.append(amount)
    if head >= _COMPACT_AT and 2 * head >= size:
        del maxima[:head]
        state.maxima_head = 0


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

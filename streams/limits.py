"""Spending limits in the stream: which limits apply, the counters, charge and give-back.

Pure. A wallet's partition keeps two things, both keyed by the wallet (co-partitioned with
every input topic):

* its **limit set** (``WalletLimitsChanged`` from ``limits.changes``): the wallet's own
  limits and its user's. The API fans a user-scoped limit out to every wallet of the user;
  so a user limit bounds each of the user's wallets on its own (see docs/topics.md: an
  exact cross-wallet user total would need a stage keyed by user).
* its **usage** (:class:`LimitUsage`): one counter per limit and period. What one approved
  transaction took (its :class:`Charge`) is kept with that transaction
  (``streams.decided.Decided``), so a failure gives back exactly what it took and the
  wallet's value stays the same size however many are in flight.

Default limits by KYC status apply on top of explicit ones (an explicit limit can only
tighten what an unverified user may do). Counters reset lazily: a counter whose period
start is older than the current one counts as zero. Periods are taken at the request's
``requested_at`` (UTC calendar), so a replay decides the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain.exceptions import DomainError
from domain.limits import KycStatus, LimitPeriod, period_end, period_start
from domain.money import ZERO, from_wire, wire
from domain.records import LimitSpec, TransactionRequested, WalletLimitsChanged
from domain.transactions import TransactionType
from streams.exceptions import WalletInvariantError

#: Counters per wallet: one per live limit and period; ended periods are dropped first.
COUNTERS_MAX = 256


@dataclass(frozen=True)
class Limit:
    """One limit as checked: a counter key, a name for the rejection, and the caps."""

    key: str
    name: str
    transaction_type: TransactionType
    period: LimitPeriod
    max_amount: Decimal
    max_count: int


def limit_from_spec(spec: LimitSpec) -> Limit:
    return Limit(
        key=str(spec.limit_id),
        name=f"{spec.scope} {spec.period_type} {spec.transaction_type} limit {spec.limit_id}",
        transaction_type=spec.transaction_type,
        period=spec.period_type,
        max_amount=spec.max_amount,
        max_count=spec.max_count,
    )


def default_limit(
    kyc: KycStatus, transaction_type: TransactionType, period: LimitPeriod, amount: Decimal, n: int
) -> Limit:
    # One counter per type and period whatever the status: verifying a user mid-day raises
    # the cap, it does not hand out a fresh allowance.
    return Limit(
        key=f"default:{transaction_type}:{period}",
        name=f"KYC {kyc} default {period} {transaction_type} limit",
        transaction_type=transaction_type,
        period=period,
        max_amount=amount,
        max_count=n,
    )


@dataclass(frozen=True)
class DefaultLimits:
    """Limits every wallet gets from its user's KYC status (settings)."""

    by_status: dict[KycStatus, tuple[Limit, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: dict[str, list[dict[str, object]]]) -> DefaultLimits:
        """``{"PENDING": [{"transaction_type": "WITHDRAWAL", "period_type": "DAILY",
        "max_amount": "1000.00", "max_count": 10}], ...}``; raises ValueError if malformed."""
        by_status: dict[KycStatus, tuple[Limit, ...]] = {}
        for status_name, items in spec.items():
            status = KycStatus(status_name)
            limits = []
            for item in items:
                unknown = set(item) - {"transaction_type", "period_type", "max_amount", "max_count"}
                if unknown:
                    raise ValueError(f"unknown default limit fields {sorted(unknown)}")
                max_count = item["max_count"]
                if not isinstance(max_count, int) or max_count < 0:
                    raise ValueError("max_count must be a non-negative integer")
                try:
                    max_amount = from_wire(str(item["max_amount"]))
                except DomainError as error:
                    raise ValueError(error.message) from None
                limits.append(
                    default_limit(
                        status,
                        TransactionType(str(item["transaction_type"])),
                        LimitPeriod(str(item["period_type"])),
                        max_amount,
                        max_count,
                    )
                )
            by_status[status] = tuple(limits)
        return cls(by_status)

    @classmethod
    def from_json(cls, text: str) -> DefaultLimits:
        return cls.parse(json.loads(text))


def applicable(
    request: TransactionRequested,
    limit_set: LimitSet,
    defaults: DefaultLimits,
    kyc_status: str | None = None,
) -> list[Limit]:
    """The limits a request must fit: its wallet's and user's of its type, plus the
    defaults of the user's KYC status: ``kyc_status``, the last compliance decision the
    wallet's partition received (``KycStatusChanged``), else the request's own."""
    kind = request.transaction_type
    found = [limit for limit in limit_set.limits if limit.transaction_type is kind]
    status = kyc_status or request.kyc_status
    if status is not None:
        for limit in defaults.by_status.get(status, ()):
            if limit.transaction_type is kind:
                found.append(limit)
    return found


@dataclass
class LimitSet:
    """The limits of one wallet as last published by the API (a table value)."""

    version: int = -1
    limits: tuple[Limit, ...] = ()

    def apply(self, change: WalletLimitsChanged) -> bool:
        """Take a newer set; an older or repeated one (a replay, a race) changes nothing."""
        if change.version <= self.version:
            return False
        self.version = change.version
        self.limits = tuple(limit_from_spec(spec) for spec in change.limits)
        return True

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "limits": [
                {
                    "key": x.key,
                    "name": x.name,
                    "transaction_type": x.transaction_type.value,
                    "period": x.period.value,
                    "max_amount": wire(x.max_amount),
                    "max_count": x.max_count,
                }
                for x in self.limits
            ],
        }

    @classmethod
    def from_json(cls, data: dict | None) -> LimitSet:
        if not data:
            return cls()
        return cls(
            version=int(data["version"]),
            limits=tuple(
                Limit(
                    key=x["key"],
                    name=x["name"],
                    transaction_type=TransactionType(x["transaction_type"]),
                    period=LimitPeriod(x["period"]),
                    max_amount=from_wire(x["max_amount"]),
                    max_count=int(x["max_count"]),
                )
                for x in data["limits"]
            ),
        )


@dataclass
class Counter:
    period: LimitPeriod
    period_start: datetime
    amount: Decimal = ZERO
    count: int = 0


@dataclass(frozen=True)
class Charge:
    """What one approved transaction took: its amount from each (counter, period start)."""

    amount: Decimal
    counters: tuple[tuple[str, datetime], ...]

    def to_json(self) -> list:
        return [wire(self.amount), [[k, s.isoformat()] for k, s in self.counters]]

    @classmethod
    def from_json(cls, data: list | None) -> Charge | None:
        if not data:
            return None
        amount, counters = data
        return cls(from_wire(amount), tuple((k, datetime.fromisoformat(s)) for k, s in counters))


@dataclass
class LimitUsage:
    """One wallet's counters, one per limit and period."""

    counters: dict[str, Counter] = field(default_factory=dict)

    def _current(self, limit: Limit, at: datetime) -> tuple[datetime, Counter | None]:
        """The period a request at ``at`` counts in, and its counter if it has one.

        A request stamped in a period older than the counter's (clocks of two API replicas
        around midnight) counts in the counter's newer period: never in a forgotten one."""
        start = period_start(at, limit.period)
        counter = self.counters.get(limit.key)
        if counter is None or counter.period_start < start:
            return start, None
        return counter.period_start, counter

    def used(self, limit: Limit, at: datetime) -> tuple[Decimal, int]:
        _start, counter = self._current(limit, at)
        return (ZERO, 0) if counter is None else (counter.amount, counter.count)

    def breached(self, limits: list[Limit], amount: Decimal, at: datetime) -> Limit | None:
        """The first limit this amount would exceed, or None when it fits them all."""
        for limit in limits:
            used_amount, used_count = self.used(limit, at)
            if used_count + 1 > limit.max_count or used_amount + amount > limit.max_amount:
                return limit
        return None

    def charge(self, limits: list[Limit], amount: Decimal, at: datetime) -> Charge | None:
        """Count an approved transaction against each limit; what it took (None: nothing,
        no limit applies). The caller keeps the charge with the transaction, once."""
        self._drop_ended(at)
        taken = []
        for limit in limits:
            start, counter = self._current(limit, at)
            if counter is None:
                counter = self.counters[limit.key] = Counter(limit.period, start)
            counter.amount += amount
            counter.count += 1
            taken.append((limit.key, start))
        return Charge(amount, tuple(taken)) if taken else None

    def give_back(self, charge: Charge | None) -> None:
        """The transaction will not happen (failed, declined, expired): return what it took,
        to counters still in the same period."""
        if charge is None:
            return
        for key, start in charge.counters:
            counter = self.counters.get(key)
            if counter is None or counter.period_start != start:
                continue  # that period is over: its counter has reset already
            counter.amount -= charge.amount
            counter.count -= 1
            if counter.amount < 0 or counter.count < 0:
                raise WalletInvariantError(f"limit counter {key} went negative")

    def _drop_ended(self, at: datetime) -> None:
        ended = [k for k, c in self.counters.items() if period_end(c.period_start, c.period) <= at]
        for key in ended:
            del self.counters[key]
        while len(self.counters) >= COUNTERS_MAX:
            self.counters.pop(next(iter(self.counters)))

    def to_json(self) -> dict[str, list]:
        return {
            k: [c.period.value, c.period_start.isoformat(), wire(c.amount), c.count]
            for k, c in self.counters.items()
        }

    @classmethod
    def from_json(cls, data: dict | None) -> LimitUsage:
        if not data:
            return cls()
        return cls(
            {
                k: Counter(LimitPeriod(p), datetime.fromisoformat(s), from_wire(a), int(n))
                for k, (p, s, a, n) in data.items()
            }
        )

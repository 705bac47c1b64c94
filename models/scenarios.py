"""Simulated wallet traffic with fraud scenarios and their ground truth: pure and seeded.

``Simulator(config)`` draws a population (``models.population``) and then, day by day, its
normal behaviour and fraud incidents. Every transaction carries its label (``is_fraud``),
the scenario that made it, and how long its label takes to become known. The same
configuration gives the same transactions, in the same order; nothing here does I/O, so
``walletpipe simulate`` sends them through the API and ``--out`` writes them to a file.

Normal behaviour: each customer pays at POS terminals of favourite shops and online, sends
money to friends from the app, withdraws cash at ATMs and gets deposits, at a Poisson rate
per day (``DAILY_RATES``), around their own hour of the day (a daily rhythm), with amounts
lognormal by type (``AMOUNTS``).

Fraud scenarios (day 0 has one incident of each, so a short run shows every one; later days
draw them at ``INCIDENT_RATES`` per 100 customers or POS terminals):

- ``account_takeover``: from a device and IP never seen for the victim, a large transfer to
  a money mule, whose cash-out ATM withdrawals follow within hours (all fraudulent);
- ``card_testing``: a burst of tiny online payments (0.50-2.99) from a fraudster's device,
  often followed by one large purchase once the card proved good;
- ``compromised_terminal``: a POS terminal is skimmed for 2-5 days: every transaction there
  in that time is fraudulent (the Handbook's scenario 2);
- ``compromised_customer``: an online payment with the stolen credentials at once, then for
  3-7 days a third of the customer's payments have their amount multiplied by 5 and are
  fraudulent (the Handbook's scenario 3);
- ``structuring``: 3-6 cash deposits just under the 10,000 reporting threshold (8,000.00 to
  9,999.99) over a day or two.

Labels: a fraud is reported after a lognormal delay whose median depends on the scenario
(``FRAUD_REPORT_DAYS``, at most ``LABEL_DELAY_MAX_S``); a legitimate transaction is labelled
so once its dispute window (``DISPUTE_WINDOW_S``) has passed.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from domain.transactions import TransactionType
from models.exceptions import ScenarioError
from models.population import AMOUNTS, CENT, DAILY_RATES, AmountModel, Customer, make_population

if TYPE_CHECKING:
    import pandas as pd

ACCOUNT_TAKEOVER = "account_takeover"
CARD_TESTING = "card_testing"
COMPROMISED_TERMINAL = "compromised_terminal"
COMPROMISED_CUSTOMER = "compromised_customer"
STRUCTURING = "structuring"
SCENARIOS = (
    ACCOUNT_TAKEOVER,
    CARD_TESTING,
    COMPROMISED_TERMINAL,
    COMPROMISED_CUSTOMER,
    STRUCTURING,
)

DAY_S = 86_400
HOUR_S = 3_600
#: A legitimate transaction is known to be one once nobody disputed it for this long.
DISPUTE_WINDOW_S = 7 * DAY_S
#: Median days until a fraud is reported (lognormal, sigma 0.5), by scenario.
FRAUD_REPORT_DAYS = {
    ACCOUNT_TAKEOVER: 1.0,
    CARD_TESTING: 2.0,
    COMPROMISED_TERMINAL: 3.0,
    COMPROMISED_CUSTOMER: 4.0,
    STRUCTURING: 5.0,
}
LABEL_DELAY_MIN_S = HOUR_S
LABEL_DELAY_MAX_S = 14 * DAY_S
#: Incidents per day and 100 customers (per 100 POS terminals for a compromised terminal),
#: from day 1 on (day 0 has one of each).
INCIDENT_RATES = {
    ACCOUNT_TAKEOVER: 0.2,
    CARD_TESTING: 0.1,
    COMPROMISED_TERMINAL: 0.3,
    COMPROMISED_CUSTOMER: 0.2,
    STRUCTURING: 0.1,
}
#: Bounds every Poisson draw (per customer and kind, or incidents per scenario and day).
POISSON_MAX = 100
REPORTING_THRESHOLD = Decimal("10000.00")
STRUCTURING_FLOOR = Decimal("8000.00")
INFLATION_FACTOR = 5
TAKEOVER_AMOUNT = AmountModel(1500.0, 0.5, minimum=Decimal("300.00"), maximum=Decimal("5000.00"))
CASH_OUT_MAX = Decimal("1000")
CARD_TEST_CASH_IN = AmountModel(250.0, 0.6)
BANK_IP = "10.20.0.1"
ATM_IP = "10.30.0.1"


@dataclass(frozen=True)
class SimTransaction:
    """One simulated transaction and its ground truth. Actors are population ids."""

    seq: int  # position in the traffic: unique, and the order to send in
    time_s: int  # seconds from the simulation's start (openings come before 0)
    transaction_type: TransactionType
    payer: str | None  # customer or mule; None when the money comes from outside
    payee: str | None  # customer, mule or merchant; None when the money leaves (ATM)
    amount: Decimal
    channel: str  # POS, WEB, APP, ATM, BANK
    terminal_id: str | None
    device_id: str | None
    ip: str
    is_fraud: bool
    scenario: str | None
    label_delay_s: int  # how long after the transaction its label is known
    description: str

    @property
    def key_actor(self) -> str:
        """Whose wallet's money moves first: the payer, or the payee of a deposit."""
        actor = self.payer or self.payee
        if actor is None:
            raise ScenarioError(f"transaction {self.seq} has neither payer nor payee")
        return actor

    @property
    def counterparty(self) -> str:
        """Where the money went or came from: the terminal, else the payee, else the channel."""
        return self.terminal_id or self.payee or self.channel

    def metadata(self) -> dict[str, str]:
        """Channel facts for the API request (never the label)."""
        facts = {
            "channel": self.channel,
            "terminal_id": self.terminal_id,
            "device_id": self.device_id,
            "ip": self.ip,
        }
        return {k: v for k, v in facts.items() if v is not None}


@dataclass(frozen=True)
class ScenarioConfig:
    customers: int = 100
    merchants: int = 8
    seed: int = 7
    fraud: bool = True
    #: Multiplies ``INCIDENT_RATES`` (day 0 keeps its one incident of each).
    fraud_rate_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraud_rate_scale <= 100.0:
            raise ScenarioError(f"fraud_rate_scale must be 0 to 100, not {self.fraud_rate_scale}")


def poisson(rng: random.Random, rate: float) -> int:
    """Knuth's method; rates here are small. Bounded by ``POISSON_MAX``."""
    limit, count, product = math.exp(-rate), 0, rng.random()
    while product > limit and count < POISSON_MAX:
        count += 1
        product *= rng.random()
    return count


class Simulator:
    """>>> sim = Simulator(ScenarioConfig(customers=20, merchants=3, seed=1))
    >>> first = list(itertools.islice(sim.traffic(), 50))
    >>> first == list(itertools.islice(Simulator(sim.config).traffic(), 50))
    True
    """

    def __init__(self, config: ScenarioConfig = ScenarioConfig()) -> None:
        self.config = config
        self.population = make_population(config.customers, config.merchants, config.seed)

    def openings(self) -> list[SimTransaction]:
        """Each wallet's first deposit, in the hour before the start: customers get
        5,000-20,000, mules a little (they are thin accounts)."""
        rng = random.Random(f"openings:{self.config.seed}")
        people = [*self.population.customers, *self.population.mules]
        return [
            SimTransaction(
                seq=i,
                time_s=-HOUR_S + i * (HOUR_S // max(len(people), 1)),
                transaction_type=TransactionType.DEPOSIT,
                payer=None,
                payee=person.id,
                amount=Decimal(
                    rng.randrange(50, 500) if person.mule else rng.randrange(5_000, 20_000)
                ),
                channel="BANK",
                terminal_id=None,
                device_id=None,
                ip=BANK_IP,
                is_fraud=False,
                scenario=None,
                label_delay_s=DISPUTE_WINDOW_S,
                description="opening deposit",
            )
            for i, person in enumerate(people)
        ]

    def traffic(self) -> Iterator[SimTransaction]:
        """Endless traffic after the openings, in time order, one day at a time."""
        day_maker = _Days(self)
        seq = itertools.count(len(self.population.customers) + len(self.population.mules))
        for day in itertools.count():
            for draft in day_maker.day(day):
                yield replace(draft, seq=next(seq))

    def transactions(self, days: int) -> list[SimTransaction]:
        """The openings and ``days`` days of traffic (for a labelled file)."""
        if not 1 <= days <= 3_650:
            raise ScenarioError(f"days must be 1 to 3650, not {days}")
        traffic = itertools.takewhile(lambda t: t.time_s < days * DAY_S, self.traffic())
        return [*self.openings(), *traffic]


class _Days:
    """The day-by-day state: compromise windows and events scheduled for later days."""

    def __init__(self, sim: Simulator) -> None:
        self.config = sim.config
        self.population = sim.population
        self.people = (*self.population.customers, *self.population.mules)
        self.rng = random.Random(f"traffic:{sim.config.seed}")
        self.terminal_windows: dict[str, tuple[int, int]] = {}
        self.customer_windows: dict[str, tuple[int, int]] = {}
        self.scheduled: list[tuple[int, int, SimTransaction]] = []
        self.order = itertools.count()  # ties in time keep the order of creation
        self.fraud_devices = itertools.count(1)

    def day(self, day: int) -> list[SimTransaction]:
        """Every transaction of ``day``, in time order (incidents may reach later days)."""
        if self.config.fraud:
            self._incidents(day)
        for person in self.people:
            for kind, rate in DAILY_RATES.items():
                for _ in range(poisson(self.rng, rate)):
                    self._normal(kind, person, day * DAY_S + self._time_of_day(person))
        end = (day + 1) * DAY_S
        out = []
        while self.scheduled and self.scheduled[0][0] < end:
            out.append(heapq.heappop(self.scheduled)[2])
        for windows in (self.terminal_windows, self.customer_windows):
            for name in [n for n, (_start, stop) in windows.items() if stop <= end]:
                del windows[name]
        return out

    def _time_of_day(self, person: Customer) -> int:
        return int((self.rng.gauss(person.home_hour, 3.0) % 24.0) * HOUR_S)

    def _push(
        self,
        time_s: int,
        kind: TransactionType,
        payer: str | None,
        payee: str | None,
        amount: Decimal,
        channel: str,
        terminal: str | None,
        device: str | None,
        ip: str,
        scenario: str | None,
        description: str,
    ) -> None:
        if scenario is None:
            delay = DISPUTE_WINDOW_S + self.rng.randrange(6 * HOUR_S)
        else:
            drawn = self.rng.lognormvariate(math.log(FRAUD_REPORT_DAYS[scenario] * DAY_S), 0.5)
            delay = int(min(max(drawn, LABEL_DELAY_MIN_S), LABEL_DELAY_MAX_S))
        transaction = SimTransaction(
            -1,
            time_s,
            kind,
            payer,
            payee,
            amount,
            channel,
            terminal,
            device,
            ip,
            scenario is not None,
            scenario,
            delay,
            description,
        )
        heapq.heappush(self.scheduled, (time_s, next(self.order), transaction))

    def _active(self, windows: dict[str, tuple[int, int]], name: str, time_s: int) -> bool:
        window = windows.get(name)
        return window is not None and window[0] <= time_s < window[1]

    def _normal(self, kind: str, person: Customer, time_s: int) -> None:
        rng, population = self.rng, self.population
        if kind in ("pos", "web"):
            self._payment(kind, person, time_s)
        elif kind == "transfer":
            self._push(
                time_s,
                TransactionType.TRANSFER,
                person.id,
                rng.choice(person.friends),
                AMOUNTS["transfer"].draw(rng, person.scale),
                "APP",
                None,
                rng.choice(person.devices),
                person.ip,
                None,
                "to a friend",
            )
        elif kind == "withdrawal":
            home = population.atms[int(person.id[1:]) % len(population.atms)]
            atm = home if rng.random() < 0.8 else rng.choice(population.atms)
            self._push(
                time_s,
                TransactionType.WITHDRAWAL,
                person.id,
                None,
                AMOUNTS["withdrawal"].draw(rng, person.scale),
                "ATM",
                atm,
                None,
                ATM_IP,
                None,
                "cash",
            )
        else:
            self._push(
                time_s,
                TransactionType.DEPOSIT,
                None,
                person.id,
                AMOUNTS["deposit"].draw(rng, person.scale),
                "BANK",
                rng.choice(population.branches),
                None,
                BANK_IP,
                None,
                "payroll",
            )

    def _payment(self, kind: str, person: Customer, time_s: int) -> None:
        rng, population = self.rng, self.population
        if kind == "pos":
            shops = [population.merchant[m] for m in person.favourites]
            shops = [s for s in shops if s.pos_terminals] or [
                m for m in population.merchants if m.pos_terminals
            ]
            shop = rng.choice(shops)
            terminal: str | None = rng.choice(shop.pos_terminals)
            device, ip, channel = None, shop.ip, "POS"
        else:
            shops = [population.merchant[m] for m in person.favourites]
            shops = [s for s in shops if s.web_terminal] or list(population.online_merchants)
            shop = rng.choice(shops)
            terminal, device, ip, channel = (
                shop.web_terminal,
                rng.choice(person.devices),
                person.ip,
                "WEB",
            )
        amount = AMOUNTS[kind].draw(rng, person.scale)
        scenario = None
        if terminal is not None and self._active(self.terminal_windows, terminal, time_s):
            scenario = COMPROMISED_TERMINAL
        elif self._active(self.customer_windows, person.id, time_s) and rng.random() < 1 / 3:
            scenario, amount = COMPROMISED_CUSTOMER, amount * INFLATION_FACTOR
            if channel == "WEB":
                ip = rng.choice(population.fraud_ips)
        self._push(
            time_s,
            TransactionType.PAYMENT,
            person.id,
            shop.id,
            amount,
            channel,
            terminal,
            device,
            ip,
            scenario,
            "purchase",
        )

    def _incidents(self, day: int) -> None:
        per_customer = self.config.customers / 100 * self.config.fraud_rate_scale
        per_terminal = len(self.population.pos_terminals) / 100 * self.config.fraud_rate_scale
        for scenario in SCENARIOS:
            scale = per_terminal if scenario == COMPROMISED_TERMINAL else per_customer
            count = 1 if day == 0 else poisson(self.rng, INCIDENT_RATES[scenario] * scale)
            for _ in range(count):
                start = day * DAY_S + self.rng.randrange(DAY_S)
                getattr(self, f"_{scenario}")(start)

    def _fraud_device(self) -> str:
        return f"DF{next(self.fraud_devices):05d}"

    def _account_takeover(self, start: int) -> None:
        rng, population = self.rng, self.population
        victim, mule = rng.choice(population.customers), rng.choice(population.mules)
        amount = TAKEOVER_AMOUNT.draw(rng)
        self._push(
            start,
            TransactionType.TRANSFER,
            victim.id,
            mule.id,
            amount,
            "APP",
            None,
            self._fraud_device(),
            rng.choice(population.fraud_ips),
            ACCOUNT_TAKEOVER,
            "to a friend",
        )
        at, left = start + rng.randrange(HOUR_S, 6 * HOUR_S), amount
        for parts in range(rng.randint(1, 3), 0, -1):  # cash it out in notes, in parts
            notes = (left / parts * Decimal(str(rng.uniform(0.85, 1.0)))) // 20 * 20
            cash = min(notes, CASH_OUT_MAX)
            if cash < 20:
                break
            self._push(
                at,
                TransactionType.WITHDRAWAL,
                mule.id,
                None,
                cash,
                "ATM",
                rng.choice(population.atms),
                None,
                ATM_IP,
                ACCOUNT_TAKEOVER,
                "cash",
            )
            left -= cash
            at += rng.randrange(5 * 60, 40 * 60)

    def _card_testing(self, start: int) -> None:
        rng, population = self.rng, self.population
        victim, device = rng.choice(population.customers), self._fraud_device()
        ip, shops, at = rng.choice(population.fraud_ips), population.online_merchants, start
        for _ in range(rng.randint(12, 40)):
            shop = rng.choice(shops)
            self._push(
                at,
                TransactionType.PAYMENT,
                victim.id,
                shop.id,
                Decimal(rng.randint(50, 299)) * CENT,
                "WEB",
                shop.web_terminal,
                device,
                ip,
                CARD_TESTING,
                "purchase",
            )
            at += rng.randint(5, 60)
        if rng.random() < 0.7:  # the card works: cash in
            shop = rng.choice(shops)
            self._push(
                at + rng.randrange(10 * 60, 2 * HOUR_S),
                TransactionType.PAYMENT,
                victim.id,
                shop.id,
                CARD_TEST_CASH_IN.draw(rng),
                "WEB",
                shop.web_terminal,
                device,
                ip,
                CARD_TESTING,
                "purchase",
            )

    def _compromised_terminal(self, start: int) -> None:
        # Skimmers go where the customers are: a terminal of some customer's favourite shop.
        rng, population = self.rng, self.population
        shops = [population.merchant[m] for m in rng.choice(population.customers).favourites]
        terminals = [t for shop in shops for t in shop.pos_terminals]
        terminal = rng.choice(terminals or population.pos_terminals)
        self.terminal_windows[terminal] = (start, start + self.rng.randint(2, 5) * DAY_S)

    def _compromised_customer(self, start: int) -> None:
        rng, population = self.rng, self.population
        victim = rng.choice(population.customers)
        self.customer_windows[victim.id] = (start, start + rng.randint(3, 7) * DAY_S)
        # The fraudster tries the stolen credentials at once, online, then blends in.
        shop = rng.choice(population.online_merchants)
        self._push(
            start,
            TransactionType.PAYMENT,
            victim.id,
            shop.id,
            AMOUNTS["web"].draw(rng, victim.scale) * INFLATION_FACTOR,
            "WEB",
            shop.web_terminal,
            rng.choice(victim.devices),
            rng.choice(population.fraud_ips),
            COMPROMISED_CUSTOMER,
            "purchase",
        )

    def _structuring(self, start: int) -> None:
        rng, population = self.rng, self.population
        person = rng.choice(population.customers)
        at = start - start % DAY_S + rng.randrange(9 * HOUR_S, 17 * HOUR_S)  # bank hours
        low, high = int(STRUCTURING_FLOOR / CENT), int(REPORTING_THRESHOLD / CENT) - 1
        for _ in range(rng.randint(3, 6)):
            self._push(
                at,
                TransactionType.DEPOSIT,
                None,
                person.id,
                Decimal(rng.randint(low, high)) * CENT,
                "BANK",
                rng.choice(population.branches),
                None,
                BANK_IP,
                STRUCTURING,
                "cash deposit",
            )
            at += rng.randrange(3 * HOUR_S, 26 * HOUR_S)


def to_frame(transactions: list[SimTransaction], start: datetime, seed: int) -> pd.DataFrame:
    """The labelled-file rows (``models.dataset``'s columns, plus the transaction's facts).

    Amounts stay exact decimal strings; ``label_known_at`` is when the label arrives."""
    import pandas as pd

    begin = pd.Timestamp(start).tz_localize("UTC") if start.tzinfo is None else pd.Timestamp(start)
    times = pd.to_timedelta([t.time_s for t in transactions], unit="s")
    delays = pd.to_timedelta([t.label_delay_s for t in transactions], unit="s")
    return pd.DataFrame(
        {
            "transaction_id": [f"sim{seed}-{t.seq:09d}" for t in transactions],
            "timestamp": begin + times,
            "customer_id": [t.key_actor for t in transactions],
            "terminal_id": [t.counterparty for t in transactions],
            "amount": [str(t.amount) for t in transactions],
            "label": [int(t.is_fraud) for t in transactions],
            "scenario": [t.scenario or "" for t in transactions],
            "transaction_type": [t.transaction_type.value for t in transactions],
            "channel": [t.channel for t in transactions],
            "payee_id": [t.payee or "" for t in transactions],
            "device_id": [t.device_id or "" for t in transactions],
            "ip": [t.ip for t in transactions],
            "label_known_at": begin + times + delays,
        }
    )

"""Who the simulator's traffic is about: customers, money mules, merchants, terminals.

Pure and seeded (``make_population``): the same configuration gives the same people. Each
customer has a wallet, one or two devices, a home IP, a daily rhythm (the hour their
activity centres on), a spending scale, favourite merchants and a few friends to pay; each
merchant has POS terminals, an online (web) terminal, or both. Money mules are customers
who receive stolen money and cash it out (account takeover). ATMs and bank branches are
terminals of their own. Amounts are lognormal by transaction type (``AMOUNTS``), scaled by
the customer: most payments are small, a few are large.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property

from models.exceptions import ScenarioError

CUSTOMERS_MAX = 200_000
MERCHANTS_MAX = 20_000
ATMS = 12
BRANCHES = 6
FRAUD_IPS = 16
CENT = Decimal("0.01")


@dataclass(frozen=True)
class AmountModel:
    """Lognormal amounts: ``median`` (USD) and ``sigma`` (of the log), rounded to ``step``."""

    median: float
    sigma: float
    step: Decimal = CENT
    minimum: Decimal = CENT
    maximum: Decimal = Decimal("50000.00")

    def draw(self, rng: random.Random, scale: float = 1.0) -> Decimal:
        value = rng.lognormvariate(math.log(self.median * scale), self.sigma)
        # Floats only for the draw: the amount itself is an exact multiple of ``step``.
        steps = max(1, round(value / float(self.step)))
        return min(max(self.step * steps, self.minimum), self.maximum)


#: What a customer spends or receives, by kind (medians in USD, before the customer's scale).
AMOUNTS: dict[str, AmountModel] = {
    "pos": AmountModel(25.0, 0.8),
    "web": AmountModel(40.0, 0.9),
    "transfer": AmountModel(50.0, 1.0),
    "deposit": AmountModel(400.0, 0.6),
    # ATMs pay out notes: multiples of 20.
    "withdrawal": AmountModel(80.0, 0.7, Decimal("20"), Decimal("20"), Decimal("1000")),
}
#: Expected transactions per customer and day, by kind.
DAILY_RATES: dict[str, float] = {
    "pos": 1.5,
    "web": 0.3,
    "transfer": 0.3,
    "withdrawal": 0.15,
    "deposit": 0.1,
}


@dataclass(frozen=True)
class Customer:
    id: str
    devices: tuple[str, ...]
    ip: str
    #: Hour of day (UTC, fractional) the customer's activity centres on.
    home_hour: float
    #: Multiplies every amount model's median: richer and poorer customers.
    scale: float
    favourites: tuple[str, ...]  # merchant ids
    friends: tuple[str, ...]  # customer ids
    mule: bool = False


@dataclass(frozen=True)
class Merchant:
    id: str
    pos_terminals: tuple[str, ...]
    web_terminal: str | None
    ip: str


@dataclass(frozen=True)
class Population:
    customers: tuple[Customer, ...]
    mules: tuple[Customer, ...]
    merchants: tuple[Merchant, ...]
    atms: tuple[str, ...]
    branches: tuple[str, ...]
    fraud_ips: tuple[str, ...]

    @property
    def pos_terminals(self) -> tuple[str, ...]:
        return tuple(t for m in self.merchants for t in m.pos_terminals)

    @property
    def online_merchants(self) -> tuple[Merchant, ...]:
        return tuple(m for m in self.merchants if m.web_terminal)

    @cached_property
    def merchant(self) -> dict[str, Merchant]:
        """Merchants by id."""
        return {m.id: m for m in self.merchants}


def _ip(rng: random.Random, first: tuple[int, ...] = (24, 67, 73, 98, 172, 186, 203)) -> str:
    return f"{rng.choice(first)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def make_population(customers: int, merchants: int, seed: int) -> Population:
    if not 1 <= customers <= CUSTOMERS_MAX:
        raise ScenarioError(f"customers must be 1 to {CUSTOMERS_MAX}, not {customers}")
    if not 1 <= merchants <= MERCHANTS_MAX:
        raise ScenarioError(f"merchants must be 1 to {MERCHANTS_MAX}, not {merchants}")
    rng = random.Random(f"population:{seed}")
    shops = []
    for m in range(merchants):
        kind = rng.random()  # 60 % shops, 25 % shops with a web shop, 15 % online only
        pos = (
            () if kind >= 0.85 else tuple(f"T{m:04d}-{t}" for t in range(1, rng.randint(1, 3) + 1))
        )
        web = f"W{m:04d}" if kind >= 0.6 or m == 0 else None  # at least one web shop
        shops.append(Merchant(f"M{m:04d}", pos, web, _ip(rng)))
    if not any(s.pos_terminals for s in shops):  # at least one shop with a POS terminal
        shops[-1] = Merchant(
            shops[-1].id, (f"T{merchants - 1:04d}-1",), shops[-1].web_terminal, shops[-1].ip
        )
    shop_ids = [s.id for s in shops]
    mules_count = max(2, customers // 50)
    ids = [f"C{i:05d}" for i in range(customers)]
    people = []
    for i, customer_id in enumerate([*ids, *(f"X{j:04d}" for j in range(mules_count))]):
        devices = tuple(f"D{i:05d}-{d}" for d in range(1, (2 if rng.random() < 0.3 else 1) + 1))
        favourites = tuple(rng.sample(shop_ids, min(len(shop_ids), rng.randint(3, 6))))
        others = [c for c in ids if c != customer_id]
        friends = tuple(rng.sample(others, min(len(others), rng.randint(1, 4))))
        people.append(
            Customer(
                id=customer_id,
                devices=devices,
                ip=_ip(rng),
                home_hour=rng.uniform(9.0, 20.0),
                scale=rng.lognormvariate(0.0, 0.5),
                favourites=favourites,
                friends=friends,
                mule=i >= customers,
            )
        )
    fraud_ips = tuple(_ip(rng, (45, 91, 185, 194)) for _ in range(FRAUD_IPS))
    return Population(
        customers=tuple(people[:customers]),
        mules=tuple(people[customers:]),
        merchants=tuple(shops),
        atms=tuple(f"ATM{a:03d}" for a in range(ATMS)),
        branches=tuple(f"BR{b:02d}" for b in range(BRANCHES)),
        fraud_ips=fraud_ips,
    )

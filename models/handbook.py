"""Transactions with the three fraud scenarios of the Fraud Detection Handbook.

The generator follows the process of Le Borgne et al., "Reproducible Machine Learning for
Credit Card Fraud Detection — Practical Handbook" (chapter 3.2): customers and terminals on
a 100×100 grid, each customer using the terminals within radius 5; Poisson daily counts,
normal amounts and times around noon. Frauds:

1. every amount over 220 is fraudulent;
2. each day 2 terminals are compromised: all their transactions in the next 28 days are
   fraudulent;
3. each day 3 customers are compromised: in the next 14 days a third of their transactions
   have their amount multiplied by 5 and are fraudulent.

Vectorised with numpy and seeded: the same arguments give the same rows. The output has the
columns ``models.dataset`` documents (transaction id, time, customer, terminal, amount,
label), so ``walletpipe models evaluate`` reads it like any labelled file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from models.exceptions import ScenarioError

SECONDS_PER_DAY = 86_400
FRAUD_AMOUNT_OVER = 220.0
COMPROMISED_TERMINALS_PER_DAY = 2
TERMINAL_COMPROMISE_DAYS = 28
COMPROMISED_CUSTOMERS_PER_DAY = 3
CUSTOMER_COMPROMISE_DAYS = 14
INFLATION_FACTOR = 5
#: Bounds on the generator's size (the Handbook's run is 5,000 x 10,000 x 183 days).
LIMITS = {"customers": 1_000_000, "terminals": 1_000_000, "days": 3_650}


@dataclass(frozen=True)
class HandbookConfig:
    customers: int = 5_000
    terminals: int = 10_000
    days: int = 140
    radius: float = 5.0
    start: datetime = datetime(2018, 4, 1)
    seed: int = 0


def generate(config: HandbookConfig = HandbookConfig()) -> pd.DataFrame:
    for name in ("customers", "terminals", "days"):
        if not 1 <= getattr(config, name) <= LIMITS[name]:
            raise ScenarioError(f"{name} must be from 1 to {LIMITS[name]:,}")
    if config.radius <= 0:
        raise ScenarioError("radius must be positive")
    rng = np.random.default_rng(config.seed)
    customer_xy = rng.uniform(0, 100, size=(config.customers, 2))
    mean_amount = rng.uniform(5, 100, size=config.customers)
    std_amount = mean_amount / 2
    tx_per_day = rng.uniform(0, 4, size=config.customers)
    terminal_xy = rng.uniform(0, 100, size=(config.terminals, 2))
    reachable = _terminals_within(customer_xy, terminal_xy, config.radius)

    counts = rng.poisson(np.tile(tx_per_day, (config.days, 1)))  # days × customers
    day = np.repeat(np.arange(config.days), counts.sum(axis=1))
    customer = np.concatenate([np.repeat(np.arange(config.customers), row) for row in counts])
    seconds = rng.normal(SECONDS_PER_DAY / 2, 20_000, size=len(customer)).astype(np.int64)
    keep = (seconds > 0) & (seconds < SECONDS_PER_DAY)
    keep &= np.array([len(reachable[c]) > 0 for c in range(config.customers)])[customer]
    day, customer, seconds = day[keep], customer[keep], seconds[keep]
    amount = rng.normal(mean_amount[customer], std_amount[customer])
    negative = amount < 0
    amount[negative] = rng.uniform(0, mean_amount[customer[negative]] * 2)
    picks = rng.random(len(customer))
    terminal = np.array(
        [reachable[c][int(p * len(reachable[c]))] for c, p in zip(customer, picks, strict=True)]
    )

    frame = (
        pd.DataFrame(
            {
                "time_s": day * SECONDS_PER_DAY + seconds,
                "day": day,
                "customer_id": customer,
                # A payment of 0.00 is not a payment: the smallest is one cent.
                "terminal_id": terminal,
                "amount": np.maximum(np.round(amount, 2), 0.01),
            }
        )
        .sort_values("time_s", kind="stable")
        .reset_index(drop=True)
    )
    frame["scenario"] = 0
    _add_frauds(frame, config, rng)
    frame["label"] = (frame["scenario"] > 0).astype(np.int8)
    frame["timestamp"] = pd.Timestamp(config.start, tz="UTC") + pd.to_timedelta(
        frame["time_s"], unit="s"
    )
    frame["transaction_id"] = np.arange(len(frame))
    return frame[
        ["transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "label", "scenario"]
    ]


def _terminals_within(
    customers: np.ndarray, terminals: np.ndarray, radius: float
) -> list[np.ndarray]:
    reachable = []
    for x, y in customers:  # bounded: one pass over terminals per customer
        distance = np.sqrt((terminals[:, 0] - x) ** 2 + (terminals[:, 1] - y) ** 2)
        reachable.append(np.flatnonzero(distance < radius))
    return reachable


def _add_frauds(frame: pd.DataFrame, config: HandbookConfig, rng: np.random.Generator) -> None:
    frame.loc[frame["amount"] > FRAUD_AMOUNT_OVER, "scenario"] = 1
    day = frame["day"].to_numpy()
    for first_day in range(config.days):
        terminals = rng.choice(config.terminals, COMPROMISED_TERMINALS_PER_DAY, replace=False)
        hit = (
            frame["terminal_id"].isin(terminals)
            & (day >= first_day)
            & (day < first_day + TERMINAL_COMPROMISE_DAYS)
        )
        frame.loc[hit, "scenario"] = 2
    for first_day in range(config.days):
        customers = rng.choice(config.customers, COMPROMISED_CUSTOMERS_PER_DAY, replace=False)
        window = (
            frame["customer_id"].isin(customers)
            & (day >= first_day)
            & (day < first_day + CUSTOMER_COMPROMISE_DAYS)
        )
        rows = np.flatnonzero(window.to_numpy())
        chosen = rng.choice(rows, len(rows) // 3, replace=False) if len(rows) else rows
        frame.loc[frame.index[chosen], "amount"] = (
            frame.loc[frame.index[chosen], "amount"] * INFLATION_FACTOR
        ).round(2)
        frame.loc[frame.index[chosen], "scenario"] = 3

"""The Handbook's 15 baseline features: hand-computed values, and the Handbook's own
pandas code (chapter 3.4, copied below) on generated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.dataset import validate
from models.handbook import HandbookConfig, generate
from models.handbook_features import HANDBOOK_FEATURES, handbook_features

DAY = 86_400
MONDAY = 4 * DAY  # 1970-01-05


def _frame(rows: list[tuple[str, str, int, float, int]]) -> pd.DataFrame:
    customer, terminal, time_s, amount, label = zip(*rows, strict=True)
    return validate(
        pd.DataFrame(
            {
                "transaction_id": range(len(rows)),
                "timestamp": time_s,
                "customer_id": customer,
                "terminal_id": terminal,
                "amount": amount,
                "label": label,
            }
        )
    )


def test_fifteen_features_by_hand() -> None:
    frame = _frame(
        [
            ("a", "T", MONDAY + 3_600, 10.0, 0),  # 01:00: night
            ("a", "T", MONDAY + 6 * 3_600 + 59 * 60, 20.0, 1),  # 06:59: night (hour <= 6)
            ("a", "T", MONDAY + 7 * 3_600, 30.0, 0),  # 07:00: day
            ("a", "T", MONDAY + DAY + 7 * 3_600 - 1, 40.0, 0),  # next day 06:59:59
            ("b", "T", MONDAY + 5 * DAY + 12 * 3_600, 60.0, 0),  # Saturday noon
            ("b", "T", MONDAY + 8 * DAY + 7 * 3_600, 50.0, 0),  # Tuesday 07:00, 8 days on
        ]
    )
    x = handbook_features(frame, delay_days=7)
    assert list(x.columns) == list(HANDBOOK_FEATURES) and len(HANDBOOK_FEATURES) == 15
    assert x["is_night"].tolist() == [1, 1, 0, 1, 0, 0]
    assert x["is_weekend"].tolist() == [0, 0, 0, 0, 1, 0]
    # Row 3 (day 1, 06:59:59): the day (day 0 06:59:59, now] holds rows 2 and 3 of a.
    assert x.loc[3, ["customer_nb_1d", "customer_avg_1d"]].tolist() == [2, 35.0]
    assert x.loc[3, ["customer_nb_7d", "customer_avg_7d"]].tolist() == [4, 25.0]
    assert x.loc[5, ["customer_nb_1d", "customer_avg_7d"]].tolist() == [1, 55.0]
    # Row 5 (day 8, 07:00), delay 7: the 1-day window (day 0 07:00, day 1 07:00] holds only
    # row 3 (row 2 at exactly day 0 07:00 is out); the 7-day window rows 0 to 3, one fraud.
    assert x.loc[5, ["terminal_nb_1d", "terminal_risk_1d"]].tolist() == [1, 0.0]
    assert x.loc[5, ["terminal_nb_7d", "terminal_risk_7d"]].tolist() == [4, 0.25]
    assert x.loc[5, ["terminal_nb_30d", "terminal_risk_30d"]].tolist() == [4, 0.25]
    # Nothing is 7 days old yet for the others: no transactions, a share of 0.
    assert (x.loc[:4, ["terminal_nb_30d", "terminal_risk_30d"]] == 0).all().all()


def _handbook_reference(frame: pd.DataFrame) -> pd.DataFrame:
    """The Handbook's ``get_customer_spending_behaviour_features`` and
    ``get_count_risk_rolling_window`` (chapter 3.4), renamed to our columns."""
    tx = pd.DataFrame(
        {
            "TRANSACTION_ID": frame.index,
            "TX_DATETIME": frame["timestamp"].dt.tz_localize(None),
            "CUSTOMER_ID": frame["customer_id"],
            "TERMINAL_ID": frame["terminal_id"],
            "TX_AMOUNT": frame["amount"],
            "TX_FRAUD": frame["label"].astype(float),
        }
    )
    tx["TX_DURING_WEEKEND"] = (tx.TX_DATETIME.dt.day_of_week >= 5).astype(float)
    tx["TX_DURING_NIGHT"] = (tx.TX_DATETIME.dt.hour <= 6).astype(float)

    def customer(c: pd.DataFrame) -> pd.DataFrame:
        c = c.sort_values("TX_DATETIME", kind="stable")
        c.index = c.TX_DATETIME
        for w in (1, 7, 30):
            total = c["TX_AMOUNT"].rolling(f"{w}D").sum()
            count = c["TX_AMOUNT"].rolling(f"{w}D").count()
            c[f"customer_nb_{w}d"] = list(count)
            c[f"customer_avg_{w}d"] = list(total / count)
        c.index = c.TRANSACTION_ID
        return c

    def terminal(t: pd.DataFrame, delay: int = 7) -> pd.DataFrame:
        t = t.sort_values("TX_DATETIME", kind="stable")
        t.index = t.TX_DATETIME
        frauds_delay = t["TX_FRAUD"].rolling(f"{delay}D").sum()
        count_delay = t["TX_FRAUD"].rolling(f"{delay}D").count()
        for w in (1, 7, 30):
            frauds = t["TX_FRAUD"].rolling(f"{delay + w}D").sum() - frauds_delay
            count = t["TX_FRAUD"].rolling(f"{delay + w}D").count() - count_delay
            t[f"terminal_nb_{w}d"] = list(count)
            t[f"terminal_risk_{w}d"] = list(frauds / count)
        t.index = t.TRANSACTION_ID
        return t.fillna(0)

    parts = [customer(c) for _, c in tx.groupby("CUSTOMER_ID")]
    tx = pd.concat(parts).sort_index()
    parts = [terminal(t) for _, t in tx.groupby("TERMINAL_ID")]
    tx = pd.concat(parts).sort_index()
    tx = tx.rename(
        columns={
            "TX_AMOUNT": "amount",
            "TX_DURING_WEEKEND": "is_weekend",
            "TX_DURING_NIGHT": "is_night",
        }
    )
    return tx[list(HANDBOOK_FEATURES)]


@pytest.mark.parametrize("seed", [5])
def test_equal_to_the_handbooks_own_code(seed: int) -> None:
    frame = validate(generate(HandbookConfig(customers=80, terminals=150, days=45, seed=seed)))
    ours = handbook_features(frame)
    theirs = _handbook_reference(frame)
    assert frame["label"].sum() > 20
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-12, atol=1e-9)

"""Fraud metrics: threshold-free (ROC AUC, average precision), Card Precision@k, and cost.

Card Precision@k follows the Handbook's definition: each day, rank the cards (customers) by
their highest score that day, take the top k, and count the share that really had a fraud
that day; cards found compromised on an earlier day drop out of later days' rankings (an
investigator already blocked them). The mean over the days is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score


@dataclass(frozen=True)
class CostModel:
    """What a decision costs: a missed fraud loses its amount, a blocked good customer costs
    a fixed friction (support call, lost sale)."""

    blocked_good_cost: float = 5.0


def card_precision_at_k(
    day: np.ndarray, customer: np.ndarray, score: np.ndarray, label: np.ndarray, k: int = 100
) -> tuple[float, list[float]]:
    frame = pd.DataFrame({"day": day, "customer": customer, "score": score, "label": label})
    detected: set = set()
    per_day = []
    for _day, rows in frame.groupby("day", sort=True):
        rows = rows[~rows["customer"].isin(detected)]
        cards = rows.groupby("customer").agg(score=("score", "max"), label=("label", "max"))
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        found = top.index[top["label"] == 1]
        per_day.append(len(found) / k)
        detected.update(found)
    return (float(np.mean(per_day)) if per_day else 0.0), per_day


def evaluate_scores(
    frame: pd.DataFrame,
    score: np.ndarray,
    k: int = 100,
    threshold: float = 0.5,
    cost: CostModel = CostModel(),
) -> dict[str, float]:
    """``frame`` has day, customer_id, label and amount columns, aligned with ``score``."""
    label = frame["label"].to_numpy()
    both_classes = 0 < label.sum() < len(label)
    cp, _ = card_precision_at_k(
        frame["day"].to_numpy(), frame["customer_id"].to_numpy(), score, label, k
    )
    flagged = score >= threshold
    amount = frame["amount"].to_numpy()
    caught = float(amount[flagged & (label == 1)].sum())
    missed = float(amount[~flagged & (label == 1)].sum())
    good_blocked = int((flagged & (label == 0)).sum())
    return {
        "transactions": len(label),
        "frauds": int(label.sum()),
        "roc_auc": float(roc_auc_score(label, score)) if both_classes else float("nan"),
        "average_precision": (
            float(average_precision_score(label, score)) if both_classes else float("nan")
        ),
        f"card_precision_at_{k}": cp,
        "fraud_amount_caught": round(caught, 2),
        "fraud_amount_missed": round(missed, 2),
        "good_customers_blocked": good_blocked,
        "cost": round(missed + good_blocked * cost.blocked_good_cost, 2),
    }

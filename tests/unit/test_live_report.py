"""The live detection report, computed by hand on a few outcomes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from models.live_report import LiveOutcome, format_live_report, live_report


def test_counts_amounts_rates_and_ranking_by_hand() -> None:
    outcomes = [
        LiveOutcome("stolen_card", D("100.00"), "decline", 95.0),
        LiveOutcome("stolen_card", D("300.00"), "approve", 20.0),
        LiveOutcome("card_testing", D("1.00"), "review", 70.0),
        *[LiveOutcome(None, D("10.00"), "approve", 5.0) for _ in range(7)],
        LiveOutcome(None, D("10.00"), "review", 80.0),
        LiveOutcome(None, D("10.00"), "refused", None),  # funds, not the fraud check
    ]
    report = live_report(outcomes, offline_ap=0.8)
    assert report["by_scenario"]["stolen_card"] == {
        "sent": 2,
        "declined": 1,
        "held": 0,
        "passed": 1,
        "sent_amount": "400.00",
        "declined_amount": "100.00",
        "held_amount": "0",
        "passed_amount": "300.00",
    }
    assert report["fraud_count_caught_share"] == pytest.approx(2 / 3)
    assert report["fraud_amount_caught_share"] == pytest.approx(101 / 401)
    assert report["legit_review_rate"] == pytest.approx(1 / 9)
    assert report["legit_decline_rate"] == 0.0
    assert report["review_rate"] == pytest.approx(2 / 12)
    # Scores: frauds 95, 20, 70; legit 5 (x7), 80. Pairs ranked right: 95 beats all 8,
    # 70 beats 7, 20 beats 7: 22 of 24.
    assert report["live_auc"] == pytest.approx(22 / 24)
    assert report["scored"] == 11 and report["offline_ap"] == 0.8
    assert "card_testing" in format_live_report(report)


def test_no_fraud_sent_leaves_the_shares_undefined() -> None:
    report = live_report([LiveOutcome(None, D("1"), "approve", 3.0)], None)
    assert report["fraud_count_caught_share"] is None and report["live_ap"] is None
    assert "n/a" in format_live_report(report)

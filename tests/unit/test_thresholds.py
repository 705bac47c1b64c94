"""Thresholds chosen for a review budget and a decline precision, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.exceptions import DatasetError
from models.thresholds import NEVER, Thresholds, choose_thresholds


def test_lowest_precise_decline_then_the_review_band_within_budget() -> None:
    # 20 transactions: the top 4 frauds, then a good one, then 2 frauds among goods.
    scores = [0.99, 0.98, 0.97, 0.96, 0.9, 0.8, 0.7, 0.6, *[0.1 - i / 1000 for i in range(12)]]
    labels = [1, 1, 1, 1, 0, 1, 0, 1, *[0] * 12]
    t = choose_thresholds(scores, labels, review_budget=0.15, decline_precision=0.8, declines_min=4)
    # Top 6: 5 frauds of 6 = 0.83 >= 0.8; top 8: 6 of 8 = 0.75 < 0.8. So decline from 0.8.
    assert t.decline_at == 0.8 and t.decline_rate == 6 / 20
    # Budget: 15% of 20 = 3 held: 0.7, 0.6 and the first 0.1.
    assert t.review_at == 0.1 and t.review_rate == 3 / 20
    assert t.decline_precision == pytest.approx(5 / 6)
    assert t.fraud_count_caught_share == 1.0
    assert t.legit_decline_rate == pytest.approx(1 / 14)
    assert Thresholds.from_json(t.as_json()) == t


def test_ties_are_never_split_and_too_few_frauds_decline_nothing() -> None:
    t = choose_thresholds(
        [0.5, 0.5, 0.5, 0.2], [1, 1, 0, 0], review_budget=0.5, decline_precision=0.5, declines_min=5
    )
    assert t.decline_at == NEVER and t.decline_rate == 0.0
    # Budget 2 of 4, but the three 0.5s go together: no review band fits.
    assert t.review_at == NEVER and t.review_rate == 0.0
    assert np.isnan(t.decline_precision) and t.as_json()["decline_precision"] is None


def test_bad_targets_are_refused() -> None:
    with pytest.raises(DatasetError):
        choose_thresholds([0.1], [0], review_budget=2.0)
    with pytest.raises(DatasetError):
        choose_thresholds([], [])

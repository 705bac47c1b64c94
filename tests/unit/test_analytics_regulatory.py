"""analytics.regulatory: currency transaction reports and suspicious activity candidates."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from analytics.regulatory import (
    Movement,
    ReportType,
    Rules,
    currency_transactions,
    detect,
    high_risk_scores,
    rapid_in_out,
    structuring,
)

DAY = datetime(2026, 3, 10, tzinfo=UTC)
RULES = Rules()
H = timedelta(hours=1)


def tid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def deposit(n: int, user: uuid.UUID, amount: str, at: datetime, wallet: uuid.UUID | None = None):  # noqa: ANN201
    return Movement(
        transaction_id=tid(n),
        transaction_type="DEPOSIT",
        at=at,
        amount=Decimal(amount),
        currency_code="USD",
        destination_user_id=user,
        destination_wallet_id=wallet or uuid.UUID(int=10_000 + n),
    )


def outflow(n: int, kind: str, user: uuid.UUID, wallet: uuid.UUID, amount: str, at: datetime):  # noqa: ANN201
    return Movement(
        transaction_id=tid(n),
        transaction_type=kind,
        at=at,
        amount=Decimal(amount),
        currency_code="USD",
        source_user_id=user,
        source_wallet_id=wallet,
    )


ALICE, BOB = uuid.UUID(int=1_001), uuid.UUID(int=1_002)
WALLET = uuid.UUID(int=2_001)


# --- currency transaction reports ----------------------------------------------------


def test_cash_in_above_the_threshold_in_one_business_day_is_reported_with_evidence() -> None:
    moves = [deposit(1, ALICE, "6000", DAY + 9 * H), deposit(2, ALICE, "4000.01", DAY + 15 * H)]
    [report] = currency_transactions(moves, RULES)
    assert report.report_type is ReportType.CURRENCY_TRANSACTION
    assert report.total_amount == Decimal("10000.01")
    assert report.business_day == DAY.date() and report.occurred_at == DAY
    assert [m.transaction_id for m in report.evidence] == [tid(1), tid(2)]
    assert dict(report.details)["direction"] == "cash_in"


def test_exactly_the_threshold_is_not_above_it() -> None:
    moves = [deposit(1, ALICE, "6000", DAY + 9 * H), deposit(2, ALICE, "4000", DAY + 15 * H)]
    assert currency_transactions(moves, RULES) == []


def test_days_directions_users_and_currencies_are_summed_apart() -> None:
    moves = [
        deposit(1, ALICE, "6000", DAY + 23 * H),
        deposit(2, ALICE, "6000", DAY + 25 * H),  # the next day
        outflow(3, "WITHDRAWAL", ALICE, WALLET, "6000", DAY + 10 * H),  # cash out, not in
        deposit(4, BOB, "5000", DAY + 10 * H),
        outflow(5, "PAYMENT", ALICE, WALLET, "9000", DAY + 11 * H),  # not cash-like
    ]
    assert currency_transactions(moves, RULES) == []


def test_cash_out_is_reported_as_such() -> None:
    moves = [outflow(i, "WITHDRAWAL", BOB, WALLET, "5000.50", DAY + i * H) for i in (1, 2)]
    [report] = currency_transactions(moves, RULES)
    assert dict(report.details)["direction"] == "cash_out" and report.subject_user_id == BOB


def test_the_business_day_follows_the_business_zone() -> None:
    tokyo = Rules(business_zone=ZoneInfo("Asia/Tokyo"))  # 23:00 and 01:00 UTC: one Tokyo day
    moves = [
        deposit(1, ALICE, "6000", DAY - timedelta(hours=1)),
        deposit(2, ALICE, "6000", DAY + H),
    ]
    assert currency_transactions(moves, RULES) == []
    [report] = currency_transactions(moves, tokyo)
    assert str(report.business_day) == "2026-03-10"


def test_report_ids_do_not_depend_on_input_order() -> None:
    moves = [deposit(1, ALICE, "6000", DAY + 9 * H), deposit(2, ALICE, "6000", DAY + 10 * H)]
    first = currency_transactions(moves, RULES)
    again = currency_transactions(list(reversed(moves)), RULES)
    assert [r.to_record() for r in first] == [r.to_record() for r in again]


# --- structuring ---------------------------------------------------------------------


def test_three_deposits_just_under_the_threshold_within_24h_are_structuring() -> None:
    moves = [deposit(i, ALICE, "9500", DAY + i * 5 * H) for i in (1, 2, 3)]
    [report] = structuring(moves, RULES, ReportType.STRUCTURING_24H)
    assert report.occurred_at == DAY + 15 * H  # fired by the third
    assert report.total_amount == Decimal("28500")
    assert [m.transaction_id for m in report.evidence] == [tid(1), tid(2), tid(3)]


def test_amounts_outside_the_band_and_spread_out_deposits_are_not() -> None:
    low = [deposit(i, ALICE, "7999.99", DAY + i * H) for i in (1, 2, 3)]
    spread = [deposit(i, BOB, "9000", DAY + i * 13 * H) for i in (1, 2, 3)]  # 26 h apart
    assert structuring(low + spread, RULES, ReportType.STRUCTURING_24H) == []


def test_one_report_per_episode_and_a_new_one_after_a_quiet_window() -> None:
    episode = [deposit(i, ALICE, "9000", DAY + i * H) for i in range(1, 6)]  # 5 in 5 h
    later = [deposit(i, ALICE, "9000", DAY + 3 * 24 * H + i * H) for i in range(6, 9)]
    reports = structuring(episode + later, RULES, ReportType.STRUCTURING_24H)
    assert [r.occurred_at for r in reports] == [DAY + 3 * H, DAY + 3 * 24 * H + 8 * H]


def test_five_deposits_within_seven_days_are_structuring_over_7d() -> None:
    moves = [deposit(i, ALICE, "8500", DAY + i * 30 * H) for i in range(1, 6)]  # every 30 h
    assert structuring(moves, RULES, ReportType.STRUCTURING_24H) == []
    [report] = structuring(moves, RULES, ReportType.STRUCTURING_7D)
    assert len(report.evidence) == 5 and dict(report.details)["window"] == "7d"


# --- rapid in and out ----------------------------------------------------------------


def test_money_in_and_straight_out_of_a_wallet_is_reported() -> None:
    moves = [
        deposit(1, ALICE, "5000", DAY + 9 * H, wallet=WALLET),
        outflow(2, "WITHDRAWAL", ALICE, WALLET, "2500", DAY + 10 * H),
        outflow(3, "TRANSFER", ALICE, WALLET, "2000", DAY + 11 * H),
    ]
    [report] = rapid_in_out(moves, RULES)
    assert report.occurred_at == DAY + 11 * H and report.subject_wallet_id == WALLET
    assert report.total_amount == Decimal("4500")
    directions = [e["direction"] for e in report.to_record()["evidence"]]
    assert directions == ["in", "out", "out"]


def test_keeping_the_money_or_taking_a_day_is_not_rapid() -> None:
    kept = [
        deposit(1, ALICE, "5000", DAY, wallet=WALLET),
        outflow(2, "WITHDRAWAL", ALICE, WALLET, "4000", DAY + H),  # 80 % < 90 %
    ]
    other = uuid.UUID(int=2_002)
    slow = [
        deposit(3, BOB, "5000", DAY, wallet=other),
        outflow(4, "WITHDRAWAL", BOB, other, "5000", DAY + 25 * H),
    ]
    small = [
        deposit(5, BOB, "2000", DAY, wallet=uuid.UUID(int=2_003)),
        outflow(6, "WITHDRAWAL", BOB, uuid.UUID(int=2_003), "2000", DAY + H),
    ]
    assert rapid_in_out(kept + slow + small, RULES) == []


def test_outflows_before_the_money_came_in_do_not_count() -> None:
    moves = [
        outflow(1, "WITHDRAWAL", ALICE, WALLET, "4800", DAY),
        deposit(2, ALICE, "5000", DAY + H, wallet=WALLET),
    ]
    assert rapid_in_out(moves, RULES) == []


# --- high risk scores ----------------------------------------------------------------


def scored(n: int, score: str, at: datetime, decision: str = "approve") -> Movement:
    return Movement(
        transaction_id=tid(n),
        transaction_type="PAYMENT",
        at=at,
        amount=Decimal("70"),
        currency_code="EUR",
        source_user_id=ALICE,
        source_wallet_id=WALLET,
        risk_score=Decimal(score),
        decision=decision,
    )


def test_scores_at_or_above_the_threshold_are_reported_once_per_transaction() -> None:
    decisions = [
        scored(1, "90", DAY),  # risk scores are 0-100, as on the records
        scored(2, "89.99", DAY),
        scored(3, "95", DAY, "review"),
        scored(3, "97.5", DAY + H, "decline"),  # the same transaction, decided again
    ]
    reports = high_risk_scores(decisions, RULES)
    assert sorted(r.evidence[0].transaction_id.int for r in reports) == [1, 3]
    worst = next(r for r in reports if r.evidence[0].transaction_id == tid(3))
    assert dict(worst.details) == {"risk_score": "97.5", "decision": "decline"}


# --- detect: windows, closing days, stability -----------------------------------------


def test_detect_keeps_reports_in_the_window_and_only_closed_days() -> None:
    moves = [
        deposit(1, ALICE, "6000", DAY + 9 * H),
        deposit(2, ALICE, "6000", DAY + 10 * H),
        *[deposit(10 + i, BOB, "9000", DAY + i * H) for i in (1, 2, 3)],
    ]
    end = DAY + 12 * H
    found = detect(moves, [], RULES, DAY, end)
    assert {r.report_type for r in found} == {
        ReportType.CURRENCY_TRANSACTION,
        ReportType.STRUCTURING_24H,
    }
    still_open = detect(moves, [], RULES, DAY, end, closed_before=end)
    assert {r.report_type for r in still_open} == {ReportType.STRUCTURING_24H}
    assert detect(moves, [], RULES, DAY + 4 * H, end, closed_before=end) == []


def test_history_beyond_the_context_does_not_change_what_is_detected() -> None:
    old = [deposit(100 + i, ALICE, "9000", DAY - timedelta(days=20) + i * H) for i in (1, 2, 3)]
    recent = [deposit(200 + i, ALICE, "9000", DAY + i * H) for i in (1, 2, 3)]
    start, end = DAY - H, DAY + 10 * H
    everything = detect(old + recent, [], RULES, start, end)
    just_context = detect(
        [m for m in old + recent if m.at >= start - RULES.context], [], RULES, start, end
    )
    assert [r.report_id for r in everything] == [r.report_id for r in just_context]
    assert [r.report_type for r in everything] == [
        ReportType.CURRENCY_TRANSACTION,  # 27,000 on DAY, at the day's start
        ReportType.STRUCTURING_24H,
    ]


def test_records_are_json_with_exact_amounts_and_stable_text() -> None:
    moves = [deposit(1, ALICE, "6000.10", DAY + 9 * H), deposit(2, ALICE, "6000", DAY + 10 * H)]
    [report] = currency_transactions(moves, RULES)
    record = report.to_record()
    assert record["total_amount"] == "12000.1000" and record["category"] == "CTR"
    assert record["evidence"][0]["at"] == "2026-03-10T09:00:00.000Z"
    assert json.dumps(record, sort_keys=True) == json.dumps(
        currency_transactions(moves, RULES)[0].to_record(), sort_keys=True
    )

"""Spending limits: UTC calendar periods, scopes, defaults by KYC, counters and give-back."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.exceptions import RecordDecodeError
from domain.limits import KycStatus, LimitPeriod, LimitScope, period_end, period_start
from domain.records import (
    LimitSpec,
    PostTransaction,
    TransactionRejected,
    TransactionRequested,
    WalletLimitsChanged,
    decode_wallet_limits_changed,
    encode,
)
from domain.transactions import TransactionType
from streams.limits import Charge, DefaultLimits, LimitSet, LimitUsage, applicable
from streams.screening import screen
from streams.settings import DEFAULT_LIMITS_JSON
from streams.wallet_state import WalletState

W = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
U = uuid.UUID("cccccccc-0000-4000-8000-000000000003")
SHOP = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
# Thursday 2026-03-05 17:30 UTC
AT = datetime(2026, 3, 5, 17, 30, tzinfo=UTC)
D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        (LimitPeriod.DAILY, "2026-03-05T00:00", "2026-03-06T00:00"),
        (LimitPeriod.WEEKLY, "2026-03-02T00:00", "2026-03-09T00:00"),
        (LimitPeriod.MONTHLY, "2026-03-01T00:00", "2026-04-01T00:00"),
        (LimitPeriod.YEARLY, "2026-01-01T00:00", "2027-01-01T00:00"),
    ],
)
def test_periods_are_utc_calendar_periods(period: LimitPeriod, start: str, end: str) -> None:
    assert period_start(AT, period) == at(start)
    assert period_end(AT, period) == at(end)
    assert period_start(at(start), period) == at(start)  # a boundary opens its period
    assert period_start(at(end) - timedelta(microseconds=1), period) == at(start)


def test_period_is_taken_in_utc_whatever_the_offset() -> None:
    tokyo = datetime(2026, 3, 6, 1, 0, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Tokyo")
    )
    assert period_start(tokyo, LimitPeriod.DAILY) == at("2026-03-06T00:00")
    assert period_end(at("2026-12-15T10:00"), LimitPeriod.MONTHLY) == at("2027-01-01T00:00")


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        period_start(datetime(2026, 1, 1), LimitPeriod.DAILY)


def spec(
    kind: TransactionType = TransactionType.PAYMENT,
    period: LimitPeriod = LimitPeriod.DAILY,
    amount: str = "100.00",
    count: int = 3,
    scope: LimitScope = LimitScope.WALLET,
) -> LimitSpec:
    return LimitSpec(
        limit_id=uuid.uuid4(),
        scope=scope,
        transaction_type=kind,
        period_type=period,
        max_amount=D(amount),
        max_count=count,
    )


def limit_set(*specs: LimitSpec, version: int = 1) -> LimitSet:
    limits = LimitSet()
    limits.apply(WalletLimitsChanged(wallet_id=W, user_id=U, version=version, limits=list(specs)))
    return limits


def request(
    amount: str,
    when: datetime = AT,
    kind: TransactionType = TransactionType.PAYMENT,
    kyc: KycStatus | None = None,
    transaction_id: uuid.UUID | None = None,
) -> TransactionRequested:
    deposit = kind is TransactionType.DEPOSIT
    return TransactionRequested(
        transaction_id=transaction_id or uuid.uuid4(),
        transaction_type=kind,
        source_wallet_id=None if deposit else W,
        destination_wallet_id=W if deposit else (SHOP if kind is not kind.WITHDRAWAL else None),
        amount=D(amount),
        fee_amount=D("0"),
        total_amount=D(amount),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key="k",
        requested_at=when,
        kyc_status=kyc,
    )


def funded(amount: str = "100000") -> WalletState:
    state = WalletState()
    state.credit(D(amount))
    return state


NO_DEFAULTS = DefaultLimits()
#: What each approved transaction took, by id (kept with the transaction in the stream).
CHARGES: dict[str, Charge | None] = {}


def run(
    items: list[TransactionRequested],
    limits: LimitSet,
    usage: LimitUsage,
    state: WalletState | None = None,
    defaults: DefaultLimits = NO_DEFAULTS,
) -> list[str]:
    state = state or funded()
    outcomes = []
    for item in items:
        outcome = screen(item, state, applicable(item, limits, defaults), usage)
        CHARGES[str(item.transaction_id)] = outcome.decided.charge
        if isinstance(outcome.command, TransactionRejected):
            outcomes.append(outcome.command.reason_code)
        else:
            outcomes.append("OK")
    return outcomes


@pytest.mark.parametrize("scope", list(LimitScope))
@pytest.mark.parametrize("period", list(LimitPeriod))
def test_amount_cap_per_period_and_scope(period: LimitPeriod, scope: LimitScope) -> None:
    limits, usage = (
        limit_set(spec(period=period, amount="100.00", count=10, scope=scope)),
        LimitUsage(),
    )
    assert run([request("60"), request("40"), request("0.01")], limits, usage) == [
        "OK",
        "OK",
        "LIMIT_EXCEEDED",
    ]
    # The next period starts from zero (its counter resets at the UTC boundary).
    assert run([request("100", period_end(AT, period))], limits, usage) == ["OK"]
    # ... and the period just before the boundary is still full.
    before = period_end(AT, period) - timedelta(seconds=1)
    assert run([request("0.01", before)], limits, usage) == ["LIMIT_EXCEEDED"]


@pytest.mark.parametrize("period", list(LimitPeriod))
def test_count_cap_per_period(period: LimitPeriod) -> None:
    limits, usage = limit_set(spec(period=period, amount="1000", count=2)), LimitUsage()
    assert run([request("1"), request("1"), request("1")], limits, usage) == [
        "OK",
        "OK",
        "LIMIT_EXCEEDED",
    ]
    assert run([request("1", period_start(AT, period) + timedelta(days=400))], limits, usage) == [
        "OK"
    ]


def test_rejection_names_the_limit_and_changes_nothing() -> None:
    limit = spec(amount="50.00", count=5)
    limits, usage = limit_set(limit), LimitUsage()
    state = funded("100")
    run([request("30")], limits, usage, state)
    before_usage, before_state = usage.to_json(), replace(state)
    item = request("30")
    outcome = screen(item, state, applicable(item, limits, NO_DEFAULTS), usage)
    assert isinstance(outcome.command, TransactionRejected)
    assert outcome.command.reason_code == "LIMIT_EXCEEDED"
    assert str(limit.limit_id) in outcome.command.reason_message
    assert "WALLET DAILY PAYMENT" in outcome.command.reason_message
    assert outcome.wallet_changed is False
    assert (usage.to_json(), state) == (before_usage, before_state)


def test_limit_of_another_type_does_not_apply() -> None:
    limits = limit_set(spec(kind=TransactionType.WITHDRAWAL, amount="1", count=1))
    assert run([request("500"), request("500")], limits, LimitUsage()) == ["OK", "OK"]


def test_every_applicable_limit_must_fit() -> None:
    limits = limit_set(
        spec(period=LimitPeriod.DAILY, amount="100", count=10),
        spec(period=LimitPeriod.MONTHLY, amount="150", count=10, scope=LimitScope.USER),
    )
    usage = LimitUsage()
    assert run([request("90", at("2026-03-01T10:00"))], limits, usage) == ["OK"]
    assert run([request("90", at("2026-03-02T10:00"))], limits, usage) == ["LIMIT_EXCEEDED"]
    assert run([request("60", at("2026-03-02T10:00"))], limits, usage) == ["OK"]


def test_only_approved_transactions_count() -> None:
    limits, usage = limit_set(spec(amount="100", count=2)), LimitUsage()
    poor = funded("10")
    assert run([request("50"), request("50")], limits, usage, poor) == [
        "INSUFFICIENT_FUNDS",
        "INSUFFICIENT_FUNDS",
    ]
    assert usage.used(limits.limits[0], AT) == (D("0"), 0)
    assert run([request("10")], limits, usage, poor) == ["OK"]
    assert usage.used(limits.limits[0], AT) == (D("10"), 1)


def test_failure_gives_back_its_charge_and_posting_keeps_the_count() -> None:
    limits, usage = limit_set(spec(amount="100", count=2)), LimitUsage()
    failed, posted = request("60"), request("40")
    assert run([failed, posted], limits, usage) == ["OK", "OK"]
    usage.give_back(CHARGES[str(failed.transaction_id)])
    usage.give_back(None)  # a transaction that took nothing
    assert usage.used(limits.limits[0], AT) == (D("40"), 1)
    assert run([request("60"), request("1")], limits, usage) == ["OK", "LIMIT_EXCEEDED"]


def test_give_back_after_the_period_reset_touches_the_new_period_not() -> None:
    limits, usage = limit_set(spec(amount="100", count=5)), LimitUsage()
    late = request("70", at("2026-03-05T23:59"))
    assert run([late], limits, usage) == ["OK"]
    assert run([request("80", at("2026-03-06T00:01"))], limits, usage) == ["OK"]
    usage.give_back(CHARGES[str(late.transaction_id)])
    assert usage.used(limits.limits[0], at("2026-03-06T00:02")) == (D("80"), 1)


def test_a_charge_says_what_it_took_and_round_trips() -> None:
    limits, usage = limit_set(spec(amount="100", count=5)), LimitUsage()
    charge = usage.charge(list(limits.limits), D("10"), AT)
    assert charge is not None and charge.amount == D("10") and len(charge.counters) == 1
    assert Charge.from_json(charge.to_json()) == charge
    assert usage.charge([], D("10"), AT) is None  # no limit applies: nothing to give back


def test_deposits_count_against_deposit_limits() -> None:
    limits = limit_set(spec(kind=TransactionType.DEPOSIT, amount="500", count=5))
    items = [request("400", kind=TransactionType.DEPOSIT) for _ in range(2)]
    assert run(items, limits, LimitUsage(), WalletState()) == ["OK", "LIMIT_EXCEEDED"]


def test_newer_limit_set_replaces_older_and_stale_sets_are_ignored() -> None:
    limits = limit_set(spec(amount="100"), version=5)
    newer = WalletLimitsChanged(wallet_id=W, user_id=U, version=7, limits=[])
    older = WalletLimitsChanged(wallet_id=W, user_id=U, version=6, limits=[spec(amount="1")])
    assert limits.apply(newer) is True
    assert limits.apply(older) is False
    assert limits.apply(newer) is False
    assert limits.limits == ()
    assert run([request("5000")], limits, LimitUsage()) == ["OK"]


def test_defaults_by_kyc_status() -> None:
    defaults = DefaultLimits.from_json(DEFAULT_LIMITS_JSON)
    empty = LimitSet()
    payment = TransactionType.PAYMENT
    for kyc, amount, outcome in [
        (KycStatus.PENDING, "10000.01", "LIMIT_EXCEEDED"),
        (KycStatus.PENDING, "10000.00", "OK"),
        (KycStatus.REJECTED, "5", "LIMIT_EXCEEDED"),
        (KycStatus.VERIFIED, "50000", "OK"),
        (None, "50000", "OK"),
    ]:
        item = request(amount, kyc=kyc)
        assert run([item], empty, LimitUsage(), defaults=defaults) == [outcome], kyc
    # An explicit limit applies on top of the default: both must fit.
    tight = limit_set(spec(kind=payment, amount="20", count=10))
    usage = LimitUsage()
    outcomes = run(
        [request("15", kyc=KycStatus.PENDING), request("15", kyc=KycStatus.PENDING)],
        tight,
        usage,
        defaults=defaults,
    )
    assert outcomes == ["OK", "LIMIT_EXCEEDED"]


def test_verifying_a_user_raises_the_cap_but_keeps_the_count() -> None:
    defaults = DefaultLimits.parse(
        {
            "PENDING": [
                {
                    "transaction_type": "PAYMENT",
                    "period_type": "DAILY",
                    "max_amount": "100",
                    "max_count": 5,
                }
            ],
            "VERIFIED": [
                {
                    "transaction_type": "PAYMENT",
                    "period_type": "DAILY",
                    "max_amount": "150",
                    "max_count": 5,
                }
            ],
        }
    )
    usage = LimitUsage()
    assert run([request("90", kyc=KycStatus.PENDING)], LimitSet(), usage, defaults=defaults) == [
        "OK"
    ]
    assert run(
        [request("50", kyc=KycStatus.VERIFIED), request("60", kyc=KycStatus.VERIFIED)],
        LimitSet(),
        usage,
        defaults=defaults,
    ) == ["OK", "LIMIT_EXCEEDED"]


@pytest.mark.parametrize(
    "spec_json",
    [
        {"UNKNOWN": []},
        {
            "PENDING": [
                {
                    "transaction_type": "PAYMENT",
                    "period_type": "HOURLY",
                    "max_amount": "1",
                    "max_count": 1,
                }
            ]
        },
        {
            "PENDING": [
                {
                    "transaction_type": "PAYMENT",
                    "period_type": "DAILY",
                    "max_amount": "-1",
                    "max_count": 1,
                }
            ]
        },
        {
            "PENDING": [
                {
                    "transaction_type": "PAYMENT",
                    "period_type": "DAILY",
                    "max_amount": "1",
                    "max_count": -1,
                }
            ]
        },
        {
            "PENDING": [
                {
                    "transaction_type": "PAYMENT",
                    "period_type": "DAILY",
                    "max_amount": "1",
                    "max_count": 1,
                    "extra": 1,
                }
            ]
        },
    ],
)
def test_malformed_default_limits_are_refused(spec_json: dict) -> None:
    with pytest.raises(ValueError):
        DefaultLimits.parse(spec_json)


def test_usage_and_limit_set_round_trip_through_json() -> None:
    limits, usage = limit_set(spec(), spec(period=LimitPeriod.YEARLY)), LimitUsage()
    run([request("10"), request("20")], limits, usage)
    assert LimitSet.from_json(limits.to_json()) == limits
    assert LimitUsage.from_json(usage.to_json()) == usage
    assert LimitUsage.from_json(None) == LimitUsage()


def test_counters_are_bounded_and_ended_periods_dropped() -> None:
    limits, usage = limit_set(spec(amount="1000000", count=100000)), LimitUsage()
    for _ in range(10):
        usage.charge(list(limits.limits), D("1"), AT)
    usage.charge(list(limits.limits), D("1"), AT + timedelta(days=2))
    assert len(usage.counters) == 1  # the ended day's counter was dropped


def test_limit_change_record_round_trips_and_bad_ones_are_refused() -> None:
    change = WalletLimitsChanged(wallet_id=W, user_id=U, version=3, limits=[spec()])
    assert decode_wallet_limits_changed(encode(change)) == change
    with pytest.raises(RecordDecodeError):
        decode_wallet_limits_changed(b'{"kind": "WalletLimitsChanged", "wallet_id": "x"}')
    bad = change.model_dump(mode="json")
    bad["limits"][0]["max_amount"] = 5
    import json

    with pytest.raises(RecordDecodeError):
        decode_wallet_limits_changed(json.dumps(bad).encode())


def test_approval_is_a_post_transaction_and_marks_the_wallet_changed() -> None:
    limits, usage = limit_set(spec()), LimitUsage()
    item = request("10")
    outcome = screen(item, funded(), applicable(item, limits, NO_DEFAULTS), usage)
    assert isinstance(outcome.command, PostTransaction)
    assert outcome.wallet_changed is True
    assert outcome.decided.charge is not None

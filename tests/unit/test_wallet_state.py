"""streams.wallet_state: holds, settlement, release and credits of one wallet in the stream."""

from __future__ import annotations

import json
from collections import deque
from decimal import Decimal

import pytest

from domain.exceptions import LedgerInvariantError
from streams.wallet_state import RECENT_CREDITS_MAX, WalletState


def D(text: str) -> Decimal:
    return Decimal(text)


def funded(available: str) -> WalletState:
    state = WalletState()
    assert state.credit("funding", D(available)) is True
    return state


def test_new_state_is_empty() -> None:
    state = WalletState()
    assert (state.available, state.reserved, state.holds) == (D("0"), D("0"), {})
    assert list(state.recent_credits) == []
    assert state.recent_credits.maxlen == RECENT_CREDITS_MAX == 256


def test_reserve_moves_available_to_reserved() -> None:
    state = funded("100.00")
    state.reserve("t1", D("30.25"))
    assert (state.available, state.reserved) == (D("69.75"), D("30.25"))
    assert state.holds == {"t1": D("30.25")}
    state.reserve("t2", D("69.75"))  # the exact remainder
    assert (state.available, state.reserved) == (D("0"), D("100.00"))
    assert state.holds == {"t1": D("30.25"), "t2": D("69.75")}


@pytest.mark.parametrize("amount", ["100.01", "0", "-1"])
def test_reserve_refuses_overdraft_and_non_positive(amount: str) -> None:
    state = funded("100.00")
    with pytest.raises(LedgerInvariantError):
        state.reserve("t1", D(amount))
    assert (state.available, state.reserved, state.holds) == (D("100.00"), D("0"), {})


def test_reserve_refuses_a_second_hold_for_the_same_transaction() -> None:
    state = funded("100")
    state.reserve("t1", D("10"))
    with pytest.raises(LedgerInvariantError) as caught:
        state.reserve("t1", D("10"))
    assert "t1" in caught.value.message
    assert (state.available, state.reserved) == (D("90"), D("10"))


def test_can_reserve() -> None:
    state = funded("10")
    assert state.can_reserve(D("10")) is True
    assert state.can_reserve(D("10.01")) is False
    assert WalletState().can_reserve(D("0.01")) is False


def test_settle_removes_the_hold_for_good() -> None:
    state = funded("100")
    state.reserve("t1", D("40"))
    assert state.settle("t1") is True
    assert (state.available, state.reserved, state.holds) == (D("60"), D("0"), {})
    # A second settle (a replayed TransactionPosted) changes nothing.
    assert state.settle("t1") is False
    assert (state.available, state.reserved, state.holds) == (D("60"), D("0"), {})


def test_release_returns_the_hold_to_available() -> None:
    state = funded("100")
    state.reserve("t1", D("40"))
    state.reserve("t2", D("10"))
    assert state.release("t1") is True
    assert (state.available, state.reserved, state.holds) == (D("90"), D("10"), {"t2": D("10")})
    assert state.release("t1") is False
    assert (state.available, state.reserved) == (D("90"), D("10"))


def test_settle_after_release_and_release_after_settle_are_no_ops() -> None:
    state = funded("100")
    state.reserve("t1", D("40"))
    state.reserve("t2", D("20"))
    assert state.release("t1") is True
    assert state.settle("t1") is False
    assert state.settle("t2") is True
    assert state.release("t2") is False
    assert (state.available, state.reserved, state.holds) == (D("80"), D("0"), {})


def test_unknown_hold_is_a_no_op() -> None:
    state = funded("5")
    assert state.settle("nope") is False
    assert state.release("nope") is False
    assert (state.available, state.reserved) == (D("5"), D("0"))


def test_credit_adds_once() -> None:
    state = WalletState()
    assert state.credit("c1", D("12.50")) is True
    assert state.credit("c2", D("0.50")) is True
    assert state.available == D("13.00")
    assert state.credit("c1", D("12.50")) is False  # a replayed credit
    assert state.available == D("13.00")
    assert list(state.recent_credits) == ["c1", "c2"]


def test_credit_does_not_touch_holds() -> None:
    state = funded("10")
    state.reserve("t1", D("10"))
    state.credit("c1", D("5"))
    assert (state.available, state.reserved, state.holds) == (D("5"), D("10"), {"t1": D("10")})


def test_recent_credits_are_bounded() -> None:
    state = WalletState()
    for n in range(RECENT_CREDITS_MAX + 10):
        assert state.credit(f"c{n}", D("1")) is True
    assert len(state.recent_credits) == RECENT_CREDITS_MAX
    assert state.available == D(RECENT_CREDITS_MAX + 10)
    # The oldest ids are forgotten, the newest still recognised.
    assert "c0" not in state.recent_credits and "c9" not in state.recent_credits
    assert state.recent_credits[0] == "c10"
    assert state.credit(f"c{RECENT_CREDITS_MAX + 9}", D("1")) is False
    assert state.credit("c10", D("1")) is False
    assert state.available == D(RECENT_CREDITS_MAX + 10)


def test_credit_never_makes_available_negative() -> None:
    # Credits come from posted ledger entries and are positive; a non-positive one is a bug
    # upstream and must not drive the wallet below zero (reserve refuses amount <= 0 alike).
    state = funded("5")
    with pytest.raises(LedgerInvariantError):
        state.credit("c-neg", D("-10"))
    assert state.available == D("5")


def test_json_round_trip() -> None:
    state = funded("100.5")
    state.reserve("t1", D("10.25"))
    state.reserve("t2", D("0.25"))
    state.credit("c2", D("1"))
    data = state.to_json()
    assert data == {
        "available": "91.0000",
        "reserved": "10.5000",
        "holds": {"t1": "10.2500", "t2": "0.2500"},
        "recent_credits": ["funding", "c2"],
    }
    # It survives a real JSON trip, as a faust table value does.
    restored = WalletState.from_json(json.loads(json.dumps(data)))
    assert restored == state
    assert restored.recent_credits.maxlen == RECENT_CREDITS_MAX
    assert restored.to_json() == data
    # And it behaves the same afterwards.
    assert restored.credit("c2", D("1")) is False
    assert restored.settle("t1") is True
    assert restored.reserved == D("0.25")


@pytest.mark.parametrize("empty", [None, {}])
def test_from_json_of_nothing_is_a_new_state(empty: dict | None) -> None:
    assert WalletState.from_json(empty) == WalletState()


def test_from_json_keeps_the_bound() -> None:
    data = {
        "available": "0",
        "reserved": "0",
        "recent_credits": [f"c{n}" for n in range(RECENT_CREDITS_MAX + 5)],
    }
    state = WalletState.from_json(data)
    assert len(state.recent_credits) == RECENT_CREDITS_MAX
    assert state.recent_credits[0] == "c5"
    assert state.holds == {}
    assert isinstance(state.recent_credits, deque)


def test_settle_a_partial_capture_returns_the_rest() -> None:
    state = WalletState(available=Decimal("100"))
    state.reserve("t", Decimal("30"))
    assert state.settle("t", Decimal("12.5"))
    assert (state.available, state.reserved, state.holds) == (Decimal("87.5"), 0, {})
    assert not state.settle("t", Decimal("12.5"))  # a repeat changes nothing


def test_settle_more_than_the_hold_is_refused_and_changes_nothing() -> None:
    state = WalletState(available=Decimal("100"))
    state.reserve("t", Decimal("30"))
    with pytest.raises(LedgerInvariantError):
        state.settle("t", Decimal("30.01"))
    assert state.holds == {"t": Decimal("30")} and state.reserved == Decimal("30")

"""streams.wallet_state: a wallet's balance in the stream, every change checked."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streams.exceptions import WalletInvariantError
from streams.store import WalletValue
from streams.wallet_state import WalletState


def D(text: str) -> Decimal:
    return Decimal(text)


def funded(available: str) -> WalletState:
    state = WalletState()
    state.credit(D(available))
    return state


def test_new_state_is_empty() -> None:
    state = WalletState()
    assert (state.available, state.reserved, state.holds_open) == (0, 0, 0)


def test_reserve_moves_available_to_reserved() -> None:
    state = funded("100")
    state.reserve(D("30"))
    assert (state.available, state.reserved, state.holds_open) == (D("70"), D("30"), 1)


@pytest.mark.parametrize("amount", ["100.01", "0", "-1"])
def test_reserve_refuses_overdraft_and_non_positive(amount: str) -> None:
    state = funded("100")
    with pytest.raises(WalletInvariantError):
        state.reserve(D(amount))
    assert (state.available, state.reserved, state.holds_open) == (D("100"), 0, 0)


def test_settle_spends_the_hold_and_returns_what_a_partial_capture_left() -> None:
    state = funded("100")
    state.reserve(D("40"))
    state.settle(D("40"), D("25"))
    assert (state.available, state.reserved, state.holds_open) == (D("75"), 0, 0)


def test_release_returns_the_hold() -> None:
    state = funded("100")
    state.reserve(D("40"))
    state.release(D("40"))
    assert (state.available, state.reserved, state.holds_open) == (D("100"), 0, 0)


@pytest.mark.parametrize(("held", "spent"), [("50", "50"), ("40", "41"), ("40", "-1"), ("0", "0")])
def test_a_settle_that_does_not_fit_the_balance_is_an_invariant_failure(
    held: str, spent: str
) -> None:
    state = funded("100")
    state.reserve(D("40"))
    with pytest.raises(WalletInvariantError):
        state.settle(D(held), D(spent))


def test_a_release_without_an_open_hold_is_an_invariant_failure() -> None:
    state = funded("100")
    with pytest.raises(WalletInvariantError):
        state.release(D("1"))


def test_reserved_left_with_no_hold_open_is_an_invariant_failure() -> None:
    state = WalletState(D("0"), D("10"), 2)
    state.release(D("5"))
    with pytest.raises(WalletInvariantError):
        state.release(D("4"))  # the last hold closes but 1 stays reserved


def test_a_credit_must_be_positive() -> None:
    with pytest.raises(WalletInvariantError):
        WalletState().credit(D("0"))


def test_the_wallet_value_round_trips_and_stays_small() -> None:
    value = WalletValue(funded("1234.5"))
    value.state.reserve(D("34.5"))
    value.reviews_open = 2
    encoded = value.encode()
    decoded = WalletValue.decode(encoded)
    assert decoded.state == value.state and decoded.reviews_open == 2
    assert len(encoded) < 100
    assert WalletValue.decode(None).state == WalletState()

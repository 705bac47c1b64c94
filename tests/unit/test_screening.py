"""streams.screening: approve and hold, or reject, one request against its wallet's state."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.records import PostTransaction, TransactionRejected, TransactionRequested
from domain.transactions import TransactionType
from streams.decided import Status
from streams.screening import screen
from streams.wallet_state import WalletState

A = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
B = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
REQUESTED_AT = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)


def D(text: str) -> Decimal:
    return Decimal(text)


def request(
    transaction_type: TransactionType,
    amount: str,
    fee: str = "0",
    *,
    source: uuid.UUID | None = A,
    destination: uuid.UUID | None = None,
    transaction_id: uuid.UUID | None = None,
) -> TransactionRequested:
    if transaction_type is TransactionType.DEPOSIT:
        source, destination = None, destination or A
    return TransactionRequested(
        transaction_id=transaction_id or uuid.uuid4(),
        transaction_type=transaction_type,
        source_wallet_id=source,
        destination_wallet_id=destination,
        amount=D(amount),
        fee_amount=D(fee),
        total_amount=D(amount) + D(fee),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key="k",
        requested_at=REQUESTED_AT,
    )


def funded(available: str) -> WalletState:
    state = WalletState()
    state.credit(D(available))
    return state


def snapshot(state: WalletState) -> tuple[Decimal, Decimal, int]:
    return (state.available, state.reserved, state.holds_open)


def test_deposit_is_approved_without_a_hold() -> None:
    state = WalletState()
    item = request(TransactionType.DEPOSIT, "50.00")
    outcome = screen(item, state)
    assert isinstance(outcome.command, PostTransaction)
    assert outcome.wallet_changed is False
    assert outcome.decided.status is Status.SENT and outcome.decided.held == 0
    assert outcome.command.facts() == item.facts()
    assert outcome.command.event_id != item.event_id
    assert outcome.command.decided_at.tzinfo is not None
    assert outcome.command.expires_at > outcome.command.decided_at
    # Nothing counts until the ledger posts the credit.
    assert snapshot(state) == (D("0"), D("0"), 0)


@pytest.mark.parametrize(
    ("transaction_type", "destination"),
    [
        (TransactionType.PAYMENT, None),
        (TransactionType.PAYMENT, B),
        (TransactionType.WITHDRAWAL, None),
        (TransactionType.TRANSFER, B),
    ],
)
def test_spend_within_funds_is_approved_with_a_hold_of_the_total(
    transaction_type: TransactionType, destination: uuid.UUID | None
) -> None:
    state = funded("100.00")
    item = request(transaction_type, "40.00", "1.50", destination=destination)
    outcome = screen(item, state)
    assert isinstance(outcome.command, PostTransaction)
    assert outcome.wallet_changed is True
    assert outcome.command.facts() == item.facts()
    assert (outcome.decided.status, outcome.decided.held) == (Status.SENT, D("41.50"))
    assert snapshot(state) == (D("58.50"), D("41.50"), 1)


def test_spending_exactly_the_available_is_approved() -> None:
    state = funded("10.00")
    outcome = screen(request(TransactionType.PAYMENT, "9.00", "1.00"), state)
    assert isinstance(outcome.command, PostTransaction)
    assert (state.available, state.reserved) == (D("0"), D("10.00"))


@pytest.mark.parametrize(("amount", "fee"), [("100.01", "0"), ("100.00", "0.01")])
def test_overdraft_is_rejected_and_state_unchanged(amount: str, fee: str) -> None:
    state = funded("100.00")
    state.reserve(D("0.01"))  # an open hold counts against available
    before = snapshot(state)
    item = request(TransactionType.WITHDRAWAL, amount, fee)
    outcome = screen(item, state)
    assert isinstance(outcome.command, TransactionRejected)
    assert outcome.wallet_changed is False
    assert outcome.decided.status is Status.REJECTED
    assert outcome.command.reason_code == "INSUFFICIENT_FUNDS"
    assert outcome.command.reason_message == (
        f"available 99.9900 USD is less than {item.total_amount}"
    )
    assert outcome.command.facts() == item.facts()
    assert snapshot(state) == before


def test_many_sequential_requests_never_overdraw() -> None:
    rng = random.Random(20240601)
    state = funded("500.00")
    credited = D("500.00")
    settled = D("0")
    approved = rejected = 0
    open_holds: dict[str, Decimal] = {}
    for _step in range(2000):
        roll = rng.random()
        if roll < 0.6:
            amount = D(rng.randint(1, 20_000)) / 100
            fee = D(rng.randint(0, 300)) / 100
            kind = rng.choice(
                [TransactionType.PAYMENT, TransactionType.WITHDRAWAL, TransactionType.TRANSFER]
            )
            destination = B if kind is TransactionType.TRANSFER else None
            available_before = state.available
            outcome = screen(request(kind, str(amount), str(fee), destination=destination), state)
            if isinstance(outcome.command, PostTransaction):
                approved += 1
                assert amount + fee <= available_before
                open_holds[str(outcome.command.transaction_id)] = outcome.decided.held
            else:
                rejected += 1
                assert isinstance(outcome.command, TransactionRejected)
                assert amount + fee > available_before
                assert state.available == available_before
        elif roll < 0.8 and open_holds:
            amount = open_holds.pop(rng.choice(sorted(open_holds)))
            state.settle(amount, amount)
            settled += amount
        elif roll < 0.9 and open_holds:
            state.release(open_holds.pop(rng.choice(sorted(open_holds))))
        else:
            amount = D(rng.randint(1, 10_000)) / 100
            state.credit(amount)
            credited += amount
        assert state.available >= 0
        assert state.reserved >= 0
        assert state.reserved == sum(open_holds.values(), D("0"))
        assert state.holds_open == len(open_holds)
        # Every cent is either spendable, held, or gone with a settled debit.
        assert state.available + state.reserved + settled == credited
    assert approved > 100 and rejected > 100  # the loop exercised both branches

"""domain.transactions: wallet rules per type, fees, system accounts and balanced postings."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from domain.exceptions import InvalidTransaction
from domain.money import ZERO
from domain.transactions import (
    SYSTEM_USER_ID,
    EntryType,
    Fee,
    FeeSchedule,
    Posting,
    SystemAccount,
    TransactionType,
    check_wallets,
    first_moving_wallet,
    postings_for,
    system_wallet_id,
)

A = uuid.UUID("11111111-1111-4111-8111-111111111111")
B = uuid.UUID("22222222-2222-4222-8222-222222222222")

DEPOSIT = TransactionType.DEPOSIT
WITHDRAWAL = TransactionType.WITHDRAWAL
TRANSFER = TransactionType.TRANSFER
PAYMENT = TransactionType.PAYMENT

CLEARING_USD = system_wallet_id(SystemAccount.EXTERNAL_CLEARING, "USD")
FEES_USD = system_wallet_id(SystemAccount.FEE_REVENUE, "USD")


# --- check_wallets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transaction_type", "source", "destination"),
    [
        (DEPOSIT, None, B),
        (WITHDRAWAL, A, None),
        (TRANSFER, A, B),
        (PAYMENT, A, None),  # to an outside merchant
        (PAYMENT, A, B),  # to a wallet of ours
    ],
)
def test_check_wallets_accepts(
    transaction_type: TransactionType, source: uuid.UUID | None, destination: uuid.UUID | None
) -> None:
    assert check_wallets(transaction_type, source, destination) is None


@pytest.mark.parametrize(
    ("transaction_type", "source", "destination", "fragment"),
    [
        (DEPOSIT, A, B, "a DEPOSIT comes from outside: omit source_wallet_id"),
        (DEPOSIT, A, None, "a DEPOSIT comes from outside: omit source_wallet_id"),
        (DEPOSIT, None, None, "a DEPOSIT needs destination_wallet_id"),
        (WITHDRAWAL, None, None, "a WITHDRAWAL needs source_wallet_id"),
        (WITHDRAWAL, None, B, "a WITHDRAWAL needs source_wallet_id"),
        (WITHDRAWAL, A, B, "a WITHDRAWAL goes outside: omit destination_wallet_id"),
        (TRANSFER, None, B, "a TRANSFER needs source_wallet_id"),
        (TRANSFER, A, None, "a TRANSFER needs destination_wallet_id"),
        (TRANSFER, None, None, "a TRANSFER needs source_wallet_id"),
        (TRANSFER, A, A, "source and destination are the same wallet"),
        (PAYMENT, None, None, "a PAYMENT needs source_wallet_id"),
        (PAYMENT, None, B, "a PAYMENT needs source_wallet_id"),
        (PAYMENT, A, A, "source and destination are the same wallet"),
    ],
)
def test_check_wallets_rejects(
    transaction_type: TransactionType,
    source: uuid.UUID | None,
    destination: uuid.UUID | None,
    fragment: str,
) -> None:
    with pytest.raises(InvalidTransaction) as caught:
        check_wallets(transaction_type, source, destination)
    assert caught.value.message == fragment
    assert caught.value.code == "INVALID_TRANSACTION"


def test_first_moving_wallet() -> None:
    assert first_moving_wallet(A, B) == A
    assert first_moving_wallet(A, None) == A
    assert first_moving_wallet(None, B) == B
    with pytest.raises(InvalidTransaction):
        first_moving_wallet(None, None)


# --- system accounts -----------------------------------------------------------------------


def test_system_wallet_id_is_deterministic() -> None:
    assert system_wallet_id(SystemAccount.EXTERNAL_CLEARING, "USD") == CLEARING_USD
    assert system_wallet_id(SystemAccount.FEE_REVENUE, "USD") == FEES_USD
    assert isinstance(CLEARING_USD, uuid.UUID)
    assert CLEARING_USD.version == 5
    # Pinned: every service and shard must derive the same id, release after release.
    namespace = uuid.UUID("6f1c3e0a-4b7e-4d7a-9c1e-2b9f5a7d0c11")
    assert CLEARING_USD == uuid.uuid5(namespace, "EXTERNAL_CLEARING:USD")
    assert FEES_USD == uuid.uuid5(namespace, "FEE_REVENUE:USD")


def test_system_wallet_ids_are_distinct_per_account_and_currency() -> None:
    currencies = ["USD", "EUR", "JPY", "KWD", "GBP"]
    ids = {(a, c): system_wallet_id(a, c) for a in SystemAccount for c in currencies}
    assert len(set(ids.values())) == len(SystemAccount) * len(currencies)
    assert SYSTEM_USER_ID not in ids.values()


# --- fees ----------------------------------------------------------------------------------


def test_fee_schedule_parse() -> None:
    schedule = FeeSchedule.parse(
        {
            "WITHDRAWAL": {"basis_points": 50, "fixed": "1.00"},
            "TRANSFER": {"basis_points": 25},
            "PAYMENT": {"fixed": "0.30"},
        }
    )
    assert schedule.fees == {
        WITHDRAWAL: Fee(50, Decimal("1.0000")),
        TRANSFER: Fee(25, ZERO),
        PAYMENT: Fee(0, Decimal("0.3000")),
    }
    assert str(schedule.fees[WITHDRAWAL].fixed) == "1.0000"
    assert FeeSchedule.parse({}).fees == {}


def test_fee_schedule_parse_rejects_unknown_type() -> None:
    with pytest.raises(ValueError):
        FeeSchedule.parse({"REFUND": {"basis_points": 10}})


@pytest.mark.parametrize(
    ("transaction_type", "amount", "currency", "expected"),
    [
        (WITHDRAWAL, "100.00", "USD", "1.5000"),  # 50 bp = 0.50, + 1.00 fixed
        (WITHDRAWAL, "10.01", "USD", "1.0500"),  # 0.05005 + 1.00 -> 1.05
        (TRANSFER, "100.00", "USD", "0.2500"),  # 25 bp
        (TRANSFER, "1.00", "USD", "0.0000"),  # 0.0025 rounds down
        (TRANSFER, "2.00", "USD", "0.0100"),  # 0.005 rounds half-up
        (TRANSFER, "6.00", "USD", "0.0200"),  # 0.015 rounds half-up
        (TRANSFER, "200", "JPY", "1.0000"),  # 0.5 yen rounds half-up to 1
        (TRANSFER, "100", "JPY", "0.0000"),  # 0.25 yen rounds to 0
        (TRANSFER, "10.000", "KWD", "0.0250"),
        (PAYMENT, "5.00", "USD", "0.3000"),
        (DEPOSIT, "100.00", "USD", "0.0000"),  # not listed: free
    ],
)
def test_fee_for(
    transaction_type: TransactionType, amount: str, currency: str, expected: str
) -> None:
    schedule = FeeSchedule.parse(
        {
            "WITHDRAWAL": {"basis_points": 50, "fixed": "1.00"},
            "TRANSFER": {"basis_points": 25},
            "PAYMENT": {"fixed": "0.30"},
        }
    )
    fee = schedule.fee_for(transaction_type, Decimal(amount), currency)
    assert fee == Decimal(expected)
    assert str(fee) == expected


def test_empty_schedule_is_free() -> None:
    for transaction_type in TransactionType:
        assert FeeSchedule().fee_for(transaction_type, Decimal("123.45"), "USD") == ZERO


# --- postings ------------------------------------------------------------------------------


def _by_wallet(postings: list[Posting]) -> dict[uuid.UUID, tuple[EntryType, Decimal]]:
    result = {p.wallet_id: (p.entry_type, p.amount) for p in postings}
    assert len(result) == len(postings), "a wallet appears twice"
    return result


AMOUNT = Decimal("10.0000")
FEE = Decimal("0.5000")


@pytest.mark.parametrize(
    ("transaction_type", "source", "destination", "payer", "payee"),
    [
        (DEPOSIT, None, B, CLEARING_USD, B),
        (WITHDRAWAL, A, None, A, CLEARING_USD),
        (TRANSFER, A, B, A, B),
        (PAYMENT, A, B, A, B),
        (PAYMENT, A, None, A, CLEARING_USD),
    ],
)
@pytest.mark.parametrize("fee", [ZERO, FEE])
def test_postings_for(
    transaction_type: TransactionType,
    source: uuid.UUID | None,
    destination: uuid.UUID | None,
    payer: uuid.UUID,
    payee: uuid.UUID,
    fee: Decimal,
) -> None:
    postings = postings_for(transaction_type, source, destination, AMOUNT, fee, "USD")
    expected = {
        payer: (EntryType.DEBIT, AMOUNT + fee),
        payee: (EntryType.CREDIT, AMOUNT),
    }
    if fee:
        expected[FEES_USD] = (EntryType.CREDIT, fee)
    assert _by_wallet(postings) == expected
    assert sum(p.signed for p in postings) == 0
    assert all(p.amount > 0 for p in postings)
    # The payer comes first: it is the only debit.
    assert postings[0] == Posting(payer, EntryType.DEBIT, AMOUNT + fee)


def test_postings_use_the_system_accounts_of_the_currency() -> None:
    postings = postings_for(WITHDRAWAL, A, None, Decimal("100"), Decimal("1"), "EUR")
    wallets = [p.wallet_id for p in postings]
    assert wallets == [
        A,
        system_wallet_id(SystemAccount.EXTERNAL_CLEARING, "EUR"),
        system_wallet_id(SystemAccount.FEE_REVENUE, "EUR"),
    ]
    assert CLEARING_USD not in wallets and FEES_USD not in wallets


def test_postings_for_needs_a_payer() -> None:
    with pytest.raises(InvalidTransaction):
        postings_for(WITHDRAWAL, None, None, AMOUNT, ZERO, "USD")


def test_posting_signed() -> None:
    assert Posting(A, EntryType.CREDIT, Decimal("3")).signed == Decimal("3")
    assert Posting(A, EntryType.DEBIT, Decimal("3")).signed == Decimal("-3")

"""ledger_writer.planning: a batch of ledger inputs becomes rows, balances and events, in
memory, with every invariant checked before anything would be written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain import records
from domain.exceptions import LedgerInvariantError, RecordDecodeError
from domain.records import (
    DuplicateDiscarded,
    PostTransaction,
    TransactionFailed,
    TransactionPosted,
    TransactionRejected,
    utc_now,
)
from domain.transactions import SystemAccount, TransactionType, system_wallet_id
from ledger_writer.planning import (
    Account,
    BatchPlan,
    check_entries_balanced,
    plan_batch,
    wallets_of,
)

A = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
B = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
CLIENT = uuid.UUID("cccccccc-0000-4000-8000-000000000003")
CLEARING = system_wallet_id(SystemAccount.EXTERNAL_CLEARING, "USD")
FEES = system_wallet_id(SystemAccount.FEE_REVENUE, "USD")
NOW = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)
REQUESTED_AT = datetime(2024, 6, 1, 9, 29, 58, tzinfo=UTC)

# Column positions of the planned rows (see ledger_writer.store).
TX_ID, TX_TYPE, TX_STATUS, TX_COMPLETED_AT = 0, 1, 2, 14
E_TX, E_WALLET, E_TYPE, E_AMOUNT, E_AFTER, E_AT = 1, 2, 3, 4, 5, 6


def D(text: str) -> Decimal:
    return Decimal(text)


def customer(
    wallet_id: uuid.UUID,
    available: str,
    *,
    currency: str = "USD",
    status: str = "ACTIVE",
    reserved: str = "0",
) -> Account:
    return Account(wallet_id, currency, status, False, D(available), D(reserved))


def system(wallet_id: uuid.UUID, balance: str = "0") -> Account:
    return Account(wallet_id, "USD", "ACTIVE", True, D(balance))


def book(*accounts: Account) -> dict[uuid.UUID, Account]:
    """The accounts the writer loads: the given customers plus the USD system accounts."""
    loaded = {CLEARING: system(CLEARING), FEES: system(FEES)}
    loaded.update({a.wallet_id: a for a in accounts})
    return loaded


def command(
    transaction_type: TransactionType,
    source: uuid.UUID | None,
    destination: uuid.UUID | None,
    amount: str,
    fee: str = "0",
    *,
    total: str | None = None,
    currency: str = "USD",
    transaction_id: uuid.UUID | None = None,
) -> PostTransaction:
    return PostTransaction(
        transaction_id=transaction_id or uuid.uuid4(),
        transaction_type=transaction_type,
        source_wallet_id=source,
        destination_wallet_id=destination,
        amount=D(amount),
        fee_amount=D(fee),
        total_amount=D(total) if total is not None else D(amount) + D(fee),
        currency_code=currency,
        client_id=CLIENT,
        idempotency_key=f"key-{uuid.uuid4()}",
        metadata={"external_reference_id": "ext-1", "channel": "web"},
        requested_at=REQUESTED_AT,
        decided_at=utc_now(),
        risk_score=D("0.25"),
    )


def rejected(source: uuid.UUID, amount: str, code: str, message: str) -> TransactionRejected:
    base = command(TransactionType.WITHDRAWAL, source, None, amount)
    return TransactionRejected(
        **base.facts(), reason_code=code, reason_message=message, decided_at=utc_now()
    )


def balances(plan: BatchPlan) -> dict[uuid.UUID, Decimal]:
    return {wallet: account.available for wallet, account in plan.accounts.items()}


def entries_of(plan: BatchPlan) -> list[tuple]:
    """(transaction, wallet, entry type, amount, balance_after) of each entry, in order."""
    return [(e[E_TX], e[E_WALLET], e[E_TYPE], e[E_AMOUNT], e[E_AFTER]) for e in plan.entries]


def events_of(plan: BatchPlan) -> list[tuple]:
    """(transaction, event type, status, error code) of each event, in order."""
    return [(e[1], e[2], e[3], e[5]) for e in plan.events]


def assert_refused(
    plan: BatchPlan, item: PostTransaction, code: str, accounts: dict[uuid.UUID, Account]
) -> TransactionFailed:
    """A refused command: one FAILED row, its events, a TransactionFailed, nothing moved."""
    assert plan.posted == 0 and plan.failed == 1 and plan.skipped_duplicates == 0
    assert plan.entries == []
    assert plan.accounts == accounts
    assert plan.changed == set()
    [row] = plan.transactions
    assert row[TX_ID] == item.transaction_id
    assert row[TX_STATUS] == "FAILED"
    assert row[TX_COMPLETED_AT] is None
    t = item.transaction_id
    assert events_of(plan) == [
        (t, "INITIATED", "SUCCESS", None),
        (t, "AUTHORIZED", "SUCCESS", None),
        (t, "FAILED", "FAILURE", code),
    ]
    [event] = plan.ledger_events
    assert isinstance(event, TransactionFailed)
    assert event.transaction_id == t
    assert event.reason_code == code
    assert event.reason_message == plan.events[-1][6]
    assert event.failed_at == NOW
    assert event.event_id != item.event_id
    return event


# --- a posted transfer ---------------------------------------------------------------------


def test_transfer_posts_balanced_entries_and_updates_balances() -> None:
    accounts = book(customer(A, "100.00"), customer(B, "5.00"))
    item = command(TransactionType.TRANSFER, A, B, "30.00", "1.50")
    plan = plan_batch([item], set(), accounts, NOW)

    t = item.transaction_id
    assert entries_of(plan) == [
        (t, A, "DEBIT", D("31.50"), D("68.50")),
        (t, B, "CREDIT", D("30.00"), D("35.00")),
        (t, FEES, "CREDIT", D("1.50"), D("1.50")),
    ]
    assert all(e[E_AT] == NOW for e in plan.entries)
    assert len({e[0] for e in plan.entries}) == 3  # fresh entry ids
    assert balances(plan) == {A: D("68.50"), B: D("35.00"), FEES: D("1.50"), CLEARING: D("0")}
    assert plan.changed == {A, B, FEES}
    assert (plan.posted, plan.failed, plan.skipped_duplicates) == (1, 0, 0)
    # The caller's dict is a snapshot; the plan works on its own copy.
    assert accounts[A].available == D("100.00")

    [row] = plan.transactions
    assert row[TX_ID] == t
    assert row[TX_TYPE] == "TRANSFER"
    assert row[TX_STATUS] == "COMPLETED"
    assert row[TX_COMPLETED_AT] == NOW
    assert row[5] == "ext-1"  # external reference, from the metadata
    assert (row[6], row[7], row[8], row[9]) == (D("30.00"), "USD", D("1.50"), D("31.50"))
    assert row[12] == REQUESTED_AT and row[13] == NOW
    assert row[18] == D("0.25")

    assert events_of(plan) == [
        (t, "INITIATED", "SUCCESS", None),
        (t, "AUTHORIZED", "SUCCESS", None),
        (t, "SETTLED", "SUCCESS", None),
    ]
    assert [e[7] for e in plan.events] == [REQUESTED_AT, item.decided_at, NOW]
    assert plan.events[0][4] == {"client_id": str(CLIENT)}

    [event] = plan.ledger_events
    assert isinstance(event, TransactionPosted)
    assert event.facts() == item.facts()
    assert event.completed_at == NOW
    assert event.risk_score == D("0.25")
    assert event.event_id != item.event_id
    check_entries_balanced(plan.entries)


def test_balance_after_is_the_posted_balance_including_reserved() -> None:
    accounts = book(customer(A, "50", reserved="20"), customer(B, "0", reserved="7"))
    item = command(TransactionType.TRANSFER, A, B, "10")
    plan = plan_batch([item], set(), accounts, NOW)
    assert [(e[2], e[4]) for e in entries_of(plan)] == [("DEBIT", D("60")), ("CREDIT", D("17"))]
    assert plan.accounts[A] == customer(A, "40", reserved="20")
    assert plan.accounts[B] == customer(B, "10", reserved="7")


@pytest.mark.parametrize(
    ("transaction_type", "source", "destination", "expected"),
    [
        (TransactionType.DEPOSIT, None, B, {CLEARING: "-21", B: "20", FEES: "1"}),
        (TransactionType.WITHDRAWAL, A, None, {A: "79", CLEARING: "20", FEES: "1"}),
        (TransactionType.PAYMENT, A, None, {A: "79", CLEARING: "20", FEES: "1"}),
        (TransactionType.PAYMENT, A, B, {A: "79", B: "20", FEES: "1"}),
    ],
)
def test_every_type_posts(
    transaction_type: TransactionType,
    source: uuid.UUID | None,
    destination: uuid.UUID | None,
    expected: dict[uuid.UUID, str],
) -> None:
    accounts = book(customer(A, "100"), customer(B, "0"))
    plan = plan_batch(
        [command(transaction_type, source, destination, "20", "1")], set(), accounts, NOW
    )
    assert plan.posted == 1 and plan.failed == 0
    for wallet, balance in expected.items():
        assert plan.accounts[wallet].available == D(balance), wallet
    assert plan.changed == set(expected)
    assert sum(a.available for a in plan.accounts.values()) == D("100")  # money is conserved


def test_system_accounts_may_go_negative() -> None:
    accounts = book(customer(B, "0"))
    plan = plan_batch([command(TransactionType.DEPOSIT, None, B, "250.00")], set(), accounts, NOW)
    assert plan.posted == 1
    assert plan.accounts[CLEARING].available == D("-250.00")
    assert [(e[1], e[2], e[4]) for e in entries_of(plan)] == [
        (CLEARING, "DEBIT", D("-250.00")),
        (B, "CREDIT", D("250.00")),
    ]


def test_exact_balance_can_be_spent_to_zero() -> None:
    accounts = book(customer(A, "21.00"))
    plan = plan_batch(
        [command(TransactionType.WITHDRAWAL, A, None, "20.00", "1.00")], set(), accounts, NOW
    )
    assert plan.posted == 1
    assert plan.accounts[A].available == D("0")


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "fee"),
    [("20.00", "0"), ("20.00", "1.00"), ("10.00", "0.01")],  # the fee alone can overdraw
)
def test_insufficient_funds_fails_without_moving_money(amount: str, fee: str) -> None:
    accounts = book(customer(A, "10.00"), customer(B, "0"))
    item = command(TransactionType.TRANSFER, A, B, amount, fee)
    plan = plan_batch([item], set(), accounts, NOW)
    event = assert_refused(plan, item, "INSUFFICIENT_FUNDS", accounts)
    assert str(A) in event.reason_message and "lacks" in event.reason_message


@pytest.mark.parametrize(
    ("source", "destination", "missing"),
    [(A, uuid.UUID(int=7), uuid.UUID(int=7)), (uuid.UUID(int=8), B, uuid.UUID(int=8))],
)
def test_unknown_wallet_fails(
    source: uuid.UUID, destination: uuid.UUID, missing: uuid.UUID
) -> None:
    accounts = book(customer(A, "100"), customer(B, "100"))
    item = command(TransactionType.TRANSFER, source, destination, "10")
    plan = plan_batch([item], set(), accounts, NOW)
    event = assert_dead_lettered(plan, item, accounts)
    assert event.reason_message == f"wallet {missing} does not exist"


def assert_dead_lettered(
    plan: BatchPlan, item: PostTransaction, accounts: dict[uuid.UUID, Account]
) -> TransactionFailed:
    """A command naming an unknown wallet: no row can reference it (foreign keys), so it is
    dead-lettered with the reason; the stream is still told to release its hold."""
    assert plan.posted == 0 and plan.failed == 1
    assert plan.transactions == [] and plan.events == [] and plan.entries == []
    assert plan.accounts == accounts and plan.changed == set()
    assert plan.dead_letters[item.event_id].startswith("WALLET_NOT_FOUND: wallet ")
    [event] = plan.ledger_events
    assert isinstance(event, TransactionFailed) and event.reason_code == "WALLET_NOT_FOUND"
    return event


def test_missing_system_account_fails_as_not_found() -> None:
    accounts = {B: customer(B, "0")}
    item = command(TransactionType.DEPOSIT, None, B, "10")
    plan = plan_batch([item], set(), accounts, NOW)
    assert_refused(plan, item, "WALLET_NOT_FOUND", accounts)


@pytest.mark.parametrize(
    ("closed_source", "status"),
    [(True, "CLOSED"), (False, "CLOSED"), (True, "SUSPENDED"), (False, "SUSPENDED")],
)
def test_inactive_wallet_fails(closed_source: bool, status: str) -> None:
    accounts = book(
        customer(A, "100", status=status if closed_source else "ACTIVE"),
        customer(B, "0", status="ACTIVE" if closed_source else status),
    )
    item = command(TransactionType.TRANSFER, A, B, "10")
    plan = plan_batch([item], set(), accounts, NOW)
    event = assert_refused(plan, item, "WALLET_NOT_ACTIVE", accounts)
    assert event.reason_message == f"wallet {A if closed_source else B} is {status}"


def test_currency_mismatch_fails() -> None:
    accounts = book(customer(A, "100"), customer(B, "0", currency="EUR"))
    item = command(TransactionType.TRANSFER, A, B, "10")
    plan = plan_batch([item], set(), accounts, NOW)
    event = assert_refused(plan, item, "CURRENCY_MISMATCH", accounts)
    assert event.reason_message == f"wallet {B} holds EUR, not USD"


def test_total_that_is_not_amount_plus_fee_fails() -> None:
    accounts = book(customer(A, "100"), customer(B, "0"))
    item = command(TransactionType.TRANSFER, A, B, "10", "1", total="10")
    plan = plan_batch([item], set(), accounts, NOW)
    assert_refused(plan, item, "INVALID_TRANSACTION", accounts)


def test_zero_amount_fails() -> None:
    accounts = book(customer(A, "100"), customer(B, "0"))
    item = command(TransactionType.TRANSFER, A, B, "0")
    plan = plan_batch([item], set(), accounts, NOW)
    assert_refused(plan, item, "INVALID_TRANSACTION", accounts)


def test_negative_fee_command_cannot_reach_the_planner() -> None:
    # A negative fee would skip the fee entry and unbalance the postings, so records refuse
    # it at decoding: on the topic it is a dead letter, never a poison batch.
    valid = command(TransactionType.TRANSFER, A, B, "10", "0")
    payload = records.encode(valid).replace(b'"fee_amount":"0.0000"', b'"fee_amount":"-5.0000"')
    payload = payload.replace(b'"total_amount":"10.0000"', b'"total_amount":"5.0000"')
    with pytest.raises(RecordDecodeError, match="fee_amount"):
        records.decode_ledger_input(payload)


def test_rejected_input_records_the_stream_reason_without_a_ledger_event() -> None:
    accounts = book(customer(A, "100"))
    item = rejected(A, "500", "INSUFFICIENT_FUNDS", "available 100 USD is less than 500")
    plan = plan_batch([item], set(), accounts, NOW)
    assert (plan.posted, plan.failed, plan.skipped_duplicates) == (0, 1, 0)
    assert plan.entries == [] and plan.changed == set() and plan.accounts == accounts
    [row] = plan.transactions
    assert row[TX_ID] == item.transaction_id and row[TX_STATUS] == "FAILED"
    t = item.transaction_id
    # Never authorized: no AUTHORIZED event, and no hold to release, so no ledger event.
    assert events_of(plan) == [
        (t, "INITIATED", "SUCCESS", None),
        (t, "FAILED", "FAILURE", "INSUFFICIENT_FUNDS"),
    ]
    assert plan.events[-1][6] == "available 100 USD is less than 500"
    assert plan.ledger_events == []


# --- duplicates ----------------------------------------------------------------------------


def test_already_posted_command_is_discarded_with_an_event() -> None:
    accounts = book(customer(A, "100"), customer(B, "0"))
    item = command(TransactionType.TRANSFER, A, B, "10")
    plan = plan_batch([item], {item.transaction_id}, accounts, NOW)
    assert (plan.posted, plan.failed, plan.skipped_duplicates) == (0, 0, 1)
    assert plan.transactions == [] and plan.events == [] and plan.entries == []
    assert plan.accounts == accounts
    [event] = plan.ledger_events
    assert isinstance(event, DuplicateDiscarded)
    assert event.facts() == item.facts()
    assert event.discarded_at == NOW
    assert event.event_id != item.event_id


def test_twice_in_one_batch_posts_once() -> None:
    accounts = book(customer(A, "100"), customer(B, "0"))
    item = command(TransactionType.TRANSFER, A, B, "10")
    repeat = PostTransaction(**item.facts(), decided_at=utc_now())  # new event id, same tx
    plan = plan_batch([item, repeat], set(), accounts, NOW)
    assert (plan.posted, plan.failed, plan.skipped_duplicates) == (1, 0, 1)
    assert len(plan.transactions) == 1 and len(plan.entries) == 2
    assert balances(plan)[A] == D("90") and balances(plan)[B] == D("10")
    assert [type(e) for e in plan.ledger_events] == [TransactionPosted, DuplicateDiscarded]


def test_duplicate_rejection_is_skipped_silently() -> None:
    accounts = book(customer(A, "100"))
    item = rejected(A, "500", "INSUFFICIENT_FUNDS", "no")
    plan = plan_batch([item, item], set(), accounts, NOW)
    assert (plan.posted, plan.failed, plan.skipped_duplicates) == (0, 1, 1)
    assert len(plan.transactions) == 1
    assert plan.ledger_events == []

    again = plan_batch([item], {item.transaction_id}, accounts, NOW)
    assert (again.failed, again.skipped_duplicates) == (0, 1)
    assert again.transactions == [] and again.ledger_events == []


def test_already_posted_is_not_mutated() -> None:
    posted: set[uuid.UUID] = set()
    item = command(TransactionType.DEPOSIT, None, B, "1")
    plan_batch([item], posted, book(customer(B, "0")), NOW)
    assert posted == set()


# --- order within a batch ------------------------------------------------------------------


def test_earlier_transaction_funds_a_later_one_in_the_same_batch() -> None:
    accounts = book(customer(A, "0"), customer(B, "0"))
    deposit = command(TransactionType.DEPOSIT, None, A, "50")
    transfer = command(TransactionType.TRANSFER, A, B, "30", "1")
    withdrawal = command(TransactionType.WITHDRAWAL, B, None, "30")
    plan = plan_batch([deposit, transfer, withdrawal], set(), accounts, NOW)
    assert (plan.posted, plan.failed) == (3, 0)
    assert balances(plan) == {A: D("19"), B: D("0"), CLEARING: D("-20"), FEES: D("1")}
    # balance_after follows the running balance through the batch.
    assert [(e[0], e[1], e[4]) for e in entries_of(plan) if e[1] in (A, B)] == [
        (deposit.transaction_id, A, D("50")),
        (transfer.transaction_id, A, D("19")),
        (transfer.transaction_id, B, D("30")),
        (withdrawal.transaction_id, B, D("0")),
    ]
    assert [type(e) for e in plan.ledger_events] == [TransactionPosted] * 3
    check_entries_balanced(plan.entries)


def test_order_matters_spend_before_funding_fails() -> None:
    accounts = book(customer(A, "0"))
    withdrawal = command(TransactionType.WITHDRAWAL, A, None, "30")
    deposit = command(TransactionType.DEPOSIT, None, A, "50")
    plan = plan_batch([withdrawal, deposit], set(), accounts, NOW)
    assert (plan.posted, plan.failed) == (1, 1)
    assert [row[TX_STATUS] for row in plan.transactions] == ["FAILED", "COMPLETED"]
    assert balances(plan)[A] == D("50")
    assert [type(e) for e in plan.ledger_events] == [TransactionFailed, TransactionPosted]
    assert plan.ledger_events[0].reason_code == "INSUFFICIENT_FUNDS"


def test_a_failure_in_the_middle_does_not_disturb_the_others() -> None:
    accounts = book(customer(A, "100"), customer(B, "0"))
    first = command(TransactionType.TRANSFER, A, B, "60")
    overdraft = command(TransactionType.TRANSFER, A, B, "60")
    last = command(TransactionType.TRANSFER, A, B, "40")
    plan = plan_batch([first, overdraft, last], set(), accounts, NOW)
    assert [row[TX_STATUS] for row in plan.transactions] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert balances(plan)[A] == D("0") and balances(plan)[B] == D("100")
    assert {e[0] for e in entries_of(plan)} == {first.transaction_id, last.transaction_id}


# --- helpers -------------------------------------------------------------------------------


def test_check_entries_balanced() -> None:
    accounts = book(customer(A, "100"), customer(B, "0"))
    items = [command(TransactionType.TRANSFER, A, B, "10", "1") for _ in range(3)]
    plan = plan_batch(items, set(), accounts, NOW)
    assert check_entries_balanced(plan.entries) is None
    assert check_entries_balanced([]) is None

    broken = list(plan.entries)
    victim = broken[4]  # the payee entry of the second transaction
    broken[4] = victim[:E_AMOUNT] + (victim[E_AMOUNT] + D("0.01"),) + victim[E_AMOUNT + 1 :]
    with pytest.raises(LedgerInvariantError) as caught:
        check_entries_balanced(broken)
    assert str(items[1].transaction_id) in caught.value.message
    assert str(items[0].transaction_id) not in caught.value.message
    assert caught.value.code == "LEDGER_INVARIANT"


def test_check_entries_balanced_catches_a_lone_entry() -> None:
    t = uuid.uuid4()
    with pytest.raises(LedgerInvariantError):
        check_entries_balanced([(uuid.uuid4(), t, A, "CREDIT", D("1"), D("1"), NOW)])


def test_wallets_of() -> None:
    items = [
        command(TransactionType.TRANSFER, A, B, "1"),
        command(TransactionType.DEPOSIT, None, B, "1"),
        command(TransactionType.WITHDRAWAL, uuid.UUID(int=9), None, "1"),
    ]
    assert wallets_of(items) == {A, B, uuid.UUID(int=9)}
    assert wallets_of([]) == set()


def test_account_posted_is_available_plus_reserved() -> None:
    assert customer(A, "10.5", reserved="2.25").posted == D("12.75")
    assert system(CLEARING, "-3").posted == D("-3")

"""The planner across shards: the payer's shard debits the payer and credits its clearing
account for the payee's shard, and sends CreditFromShard; the payee's shard debits its
clearing account for the payer's shard and credits the payee. Each shard balances alone."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from domain.exceptions import LedgerInvariantError
from domain.records import (
    CreditFromShard,
    DuplicateDiscarded,
    GatewayResponded,
    TransactionFailed,
    TransactionPosted,
    utc_now,
)
from domain.shards import clearing_wallet_id
from domain.transactions import TransactionType
from ledger_writer.book import Account, BatchPlan
from ledger_writer.planning import TwoPhase, plan_batch
from ledger_writer.sharding import home_shard
from tests.unit.test_ledger_planning import NOW, A, B, D, book, command, customer, system

TRANSFER = TransactionType.TRANSFER
PAYMENT = TransactionType.PAYMENT
DEPOSIT = TransactionType.DEPOSIT
C01 = clearing_wallet_id(0, 1, "USD")  # shard 0's account for shard 1
C10 = clearing_wallet_id(1, 0, "USD")  # shard 1's account for shard 0


def remote(wallet_id: uuid.UUID, shard: int, *, status: str = "ACTIVE", currency: str = "USD"):
    return Account(wallet_id, currency, status, False, D("0"), remote_shard=shard)


def shard0(*accounts: Account) -> dict[uuid.UUID, Account]:
    return {**book(*accounts), C01: system(C01)}


def shard1(*accounts: Account) -> dict[uuid.UUID, Account]:
    return {**book(*accounts), C10: system(C10)}


def sums_to_zero(plan: BatchPlan) -> bool:
    """This shard's entries alone balance (debits = credits), whatever the other does."""
    signed = [e[4] if e[3] == "CREDIT" else -e[4] for e in plan.entries]
    return bool(signed) and sum(signed) == 0


def source_leg(amount: str = "30", fee: str = "1") -> tuple[BatchPlan, CreditFromShard]:
    transfer = command(TRANSFER, A, B, amount, fee)
    plan = plan_batch([transfer], set(), shard0(customer(A, "100"), remote(B, 1)), NOW, shard=0)
    assert len(plan.shard_credits) == 1
    return plan, plan.shard_credits[0]


def test_source_shard_debits_payer_and_credits_its_clearing_account() -> None:
    plan, leg = source_leg()
    assert plan.accounts[A].available == D("69")
    assert plan.accounts[C01].available == D("30")
    assert B not in plan.changed  # the payee's balance is shard 1's
    assert all(e[2] != B for e in plan.entries)
    assert (leg.from_shard, leg.to_shard, leg.wallet_id) == (0, 1, B)
    assert leg.credit_amount == D("30") and leg.captured_amount is None
    # The transaction completes on shard 1: no TransactionPosted from here yet.
    assert not any(isinstance(e, TransactionPosted) for e in plan.ledger_events)
    assert [r[2] for r in plan.transactions] == ["COMPLETED"]
    assert sums_to_zero(plan)


def test_destination_shard_credits_payee_from_its_clearing_account() -> None:
    _, leg = source_leg()
    plan = plan_batch([leg], set(), shard1(customer(B, "5")), NOW, shard=1)
    assert plan.accounts[B].available == D("35")
    assert plan.accounts[C10].available == D("-30")
    assert sums_to_zero(plan)
    (posted,) = plan.ledger_events
    assert isinstance(posted, TransactionPosted) and posted.transaction_id == leg.transaction_id
    assert [r[2] for r in plan.transactions] == ["COMPLETED"]
    # Across the pair the clearing accounts net out once both legs posted.
    assert D("30") + plan.accounts[C10].available == 0


def test_replayed_shard_credit_posts_once_and_says_nothing() -> None:
    _, leg = source_leg()
    plan = plan_batch([leg, leg], set(), shard1(customer(B, "0")), NOW, shard=1)
    assert plan.accounts[B].available == D("30")
    assert plan.skipped_duplicates == 1
    again = plan_batch([leg], {leg.transaction_id}, shard1(customer(B, "0")), NOW, shard=1)
    assert not again.entries and not again.ledger_events
    assert not any(isinstance(e, DuplicateDiscarded) for e in again.ledger_events)


def test_shard_credit_for_an_unknown_wallet_is_dead_lettered_and_moves_nothing() -> None:
    _, leg = source_leg()
    plan = plan_batch([leg], set(), shard1(), NOW, shard=1)
    assert not plan.entries and not plan.ledger_events
    assert "WALLET_NOT_FOUND" in plan.dead_letters[leg.event_id]


def test_shard_credit_for_another_shard_is_an_invariant_error() -> None:
    _, leg = source_leg()
    with pytest.raises(LedgerInvariantError):
        plan_batch([leg], set(), shard0(customer(B, "0")), NOW, shard=0)


def test_shard_credit_reaches_a_wallet_suspended_meanwhile() -> None:
    _, leg = source_leg()
    plan = plan_batch([leg], set(), shard1(customer(B, "0", status="SUSPENDED")), NOW, shard=1)
    assert plan.accounts[B].available == D("30")
    assert plan.accounts[B].status == "SUSPENDED"


def test_remote_payee_is_checked_before_any_money_moves() -> None:
    for payee in (remote(B, 1, status="CLOSED"), remote(B, 1, currency="EUR")):
        plan = plan_batch(
            [command(TRANSFER, A, B, "10")], set(), shard0(customer(A, "100"), payee), NOW
        )
        assert not plan.entries and not plan.shard_credits
        assert plan.accounts[A].available == D("100")
        assert any(isinstance(e, TransactionFailed) for e in plan.ledger_events)


def test_insufficient_funds_sends_nothing_to_the_other_shard() -> None:
    plan = plan_batch(
        [command(TRANSFER, A, B, "500")], set(), shard0(customer(A, "100"), remote(B, 1)), NOW
    )
    assert not plan.shard_credits and not plan.crossings and not plan.entries


def test_a_payer_on_another_shard_is_never_debited_here() -> None:
    with pytest.raises(LedgerInvariantError):
        plan_batch(
            [command(TRANSFER, A, B, "5")],
            set(),
            shard0(remote(A, 1)._replace(available=D("100")), customer(B, "0")),
            NOW,
        )


def test_two_phase_payment_to_another_shard_sends_the_captured_amount() -> None:
    payment = command(PAYMENT, A, B, "50", "2")
    two_phase = TwoPhase()
    accounts = shard0(customer(A, "100"), remote(B, 1))
    held = plan_batch([payment], set(), accounts, NOW, two_phase=two_phase)
    assert held.held == 1 and not held.shard_credits
    answer = GatewayResponded(
        transaction_id=payment.transaction_id,
        wallet_id=A,
        outcome="CAPTURED",
        captured_amount=D("20"),
        responded_at=utc_now(),
    )
    captured = plan_batch(
        [answer], set(), held.accounts, NOW, two_phase=two_phase, holds=held.holds
    )
    (leg,) = captured.shard_credits
    assert leg.credit_amount == D("20") and leg.captured_amount == D("20")
    assert captured.accounts[A].available == D("78")  # 100 - (20 + 2 fee)
    credited = plan_batch([leg], set(), shard1(customer(B, "0")), NOW, shard=1)
    (posted,) = credited.ledger_events
    assert isinstance(posted, TransactionPosted) and posted.captured_amount == D("20")
    # A closed copy of the hold tells a later reversal on shard 1 what moved.
    assert [(h[0], h[1], h[2]) for h in credited.holds_opened] == [
        (payment.transaction_id, A, D("52"))
    ]
    assert credited.holds_closed == [(payment.transaction_id, "CAPTURED", D("20"), NOW)]


def test_home_shard_is_the_payers() -> None:
    owners = {A: 0, B: 1}
    assert home_shard(command(TRANSFER, A, B, "1"), owners) == 0
    assert home_shard(command(TRANSFER, B, A, "1"), owners) == 1
    assert home_shard(command(DEPOSIT, None, B, "1"), owners) == 1
    assert home_shard(command(TRANSFER, uuid.uuid4(), B, "1"), owners) == 1
    assert home_shard(command(DEPOSIT, None, uuid.uuid4(), "1"), owners) == 0
    _, leg = source_leg()
    assert home_shard(leg, {}) == 1
    answer = GatewayResponded(
        transaction_id=uuid.uuid4(), wallet_id=B, outcome="VOIDED", responded_at=utc_now()
    )
    assert home_shard(answer, owners) == 1


def test_amounts_stay_exact_decimals() -> None:
    _, leg = source_leg("0.01", "0")
    assert isinstance(leg.credit_amount, Decimal) and leg.credit_amount == D("0.01")


def test_verify_merge_counts_in_flight_and_flags_unsent_or_changed_credits() -> None:
    from ledger_writer.verify_shards import _merge

    t = [uuid.UUID(int=n) for n in range(1, 6)]
    sent = [(t[0], D("5")), (t[1], D("7")), (t[3], D("2"))]
    received = [(t[0], D("5")), (t[2], D("1")), (t[3], D("3"))]
    count, amount, bad = _merge(iter(sent), iter(received))
    assert count == 1  # t[1] was sent, not received
    assert amount == D("7") - D("1") - D("1")  # = sent - received overall
    assert bad == [(t[2], D("1"), None), (t[3], D("3"), D("2"))]
    assert _merge(iter([]), iter([])) == (0, D("0"), [])


def test_a_hold_on_another_shards_payer_is_an_invariant_error() -> None:
    with pytest.raises(LedgerInvariantError):
        plan_batch(
            [command(PAYMENT, A, None, "5")],
            set(),
            shard0(remote(A, 1)._replace(available=D("100"))),
            NOW,
            two_phase=TwoPhase(),
        )


def test_malformed_shard_credits_are_dead_lettered_and_move_nothing() -> None:
    _, leg = source_leg()
    bad = [
        leg.model_copy(update={"credit_amount": D("31")}),  # more than the transaction
        leg.model_copy(update={"from_shard": 1}),  # from itself
        leg.model_copy(update={"wallet_id": uuid.uuid4()}),  # not the destination
        leg.model_copy(update={"from_shard": 5}),  # no clearing account for shard 5
    ]
    for item in bad:
        plan = plan_batch([item], set(), shard1(customer(B, "0")), NOW, shard=1)
        assert not plan.entries and not plan.ledger_events and not plan.transactions
        assert item.event_id in plan.dead_letters


def test_writer_settings_name_the_shard_database_and_group() -> None:
    from domain.shards import ShardConfigError
    from ledger_writer.settings import LedgerSettings

    single = LedgerSettings(DATABASE_URL="postgresql://h/wallet", KAFKA_BOOTSTRAP="k")
    assert single.shard_database_url == "postgresql://h/wallet"
    assert single.group == "ledger-writer" and not single.shard_map.sharded
    urls = "postgresql://h/wallet_shard_0,postgresql://h/wallet_shard_1"
    second = LedgerSettings(
        DATABASE_URL="postgresql://h/wallet",
        KAFKA_BOOTSTRAP="k",
        LEDGER_DATABASE_URLS=urls,
        shard=1,
    )
    assert second.shard_database_url == "postgresql://h/wallet_shard_1"
    assert second.group == "ledger-writer-shard-1" and second.shard_map.count == 2
    third = LedgerSettings(
        DATABASE_URL="postgresql://h/wallet",
        KAFKA_BOOTSTRAP="k",
        LEDGER_DATABASE_URLS=urls,
        shard=2,
    )
    with pytest.raises(ShardConfigError):
        third.shard_database_url  # noqa: B018

"""ledger_writer.admission and the planner's unprocessable inputs: a record the ledger cannot
store is found before planning and fails alone, from a storable copy."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from domain.records import (
    CreditFromShard,
    GatewayResponded,
    PostTransaction,
    TransactionFailed,
    TransactionPosted,
    TransactionRejected,
    utc_now,
)
from domain.transactions import TransactionType
from ledger_writer import admission
from ledger_writer.planning import plan_batch
from tests.unit.test_ledger_planning import NOW, A, B, book, command, customer, events_of
from tests.unit.test_ledger_two_phase import TWO_PHASE, answer, held

TX_STATUS, TX_DESCRIPTION, TX_METADATA, TX_RISK = 2, 10, 11, 18

#: The inputs of issue 10, as a record other than the API's could carry them.
POISON = {
    "big integer in metadata": {"metadata": {"n": 10**30}},
    "NUL in description": {"description": "coffee\x00beans"},
    "NUL in a metadata key": {"metadata": {"chan\x00nel": "web"}},
    "NUL in a metadata value": {"metadata": {"channel": "w\x00b"}},
    "NUL in external_reference_id": {"metadata": {"external_reference_id": "ref\x00-1"}},
    "external_reference_id too long": {"metadata": {"external_reference_id": "r" * 256}},
    "NUL in idempotency_key": {"idempotency_key": "key\x00"},
    "lone surrogate in user_agent": {"user_agent": "agent \ud800"},
    "risk score beyond DECIMAL(5,2)": {"risk_score": Decimal("123456")},
    "risk score that rounds past 999.99": {"risk_score": Decimal("999.995")},
}


def poisoned(field_values: dict) -> PostTransaction:
    return command(TransactionType.TRANSFER, A, B, "10").model_copy(update=field_values)


def test_a_plain_command_is_admitted() -> None:
    assert admission.problem(command(TransactionType.TRANSFER, A, B, "10")) is None
    extremes = {"metadata": {"low": -(2**63), "high": 2**64 - 1, "ok": True, "none": None}}
    assert admission.problem(poisoned(extremes)) is None


@pytest.mark.parametrize("name", list(POISON))
def test_each_unstorable_value_is_named_and_its_copy_is_storable(name: str) -> None:
    item = poisoned(POISON[name])
    found = admission.problem(item)
    assert found is not None and found.code == "UNPROCESSABLE_RECORD"
    assert found.row_storable
    assert "\x00" not in found.message
    copy = admission.storable(item)
    assert admission.problem(copy) is None
    assert (copy.transaction_id, copy.amount, copy.source_wallet_id) == (
        item.transaction_id,
        item.amount,
        item.source_wallet_id,
    )


def test_the_copy_keeps_what_can_be_stored() -> None:
    item = poisoned({"metadata": {"n": 10**30, "channel": "POS", "k\x00": "v"}})
    assert admission.storable(item).metadata == {"channel": "POS", "k\ufffd": "v"}
    described = admission.storable(poisoned({"description": "a\x00b"}))
    assert described.description == "a\ufffdb"


@pytest.mark.parametrize(
    ("kind", "source", "destination", "amount", "fee", "total"),
    [
        (TransactionType.TRANSFER, A, A, "10", "0", "10"),  # to itself
        (TransactionType.TRANSFER, A, None, "10", "0", "10"),  # no destination
        (TransactionType.PAYMENT, None, B, "10", "0", "10"),  # no payer
        (TransactionType.TRANSFER, A, B, "0", "0", "0"),  # nothing moves
        (TransactionType.TRANSFER, A, B, "10", "1", "10"),  # total is not amount + fee
    ],
)
def test_facts_the_table_refuses_leave_no_row(kind, source, destination, amount, fee, total):
    item = command(kind, source, destination, amount, fee, total=total)
    found = admission.problem(item)
    assert found is not None and not found.row_storable


def test_a_rejection_is_checked_for_its_reason_too() -> None:
    base = command(TransactionType.WITHDRAWAL, A, None, "5")
    tabbed = TransactionRejected(
        **base.facts(), reason_code="LIMIT\tX", reason_message="m", decided_at=utc_now()
    )
    nul = TransactionRejected(
        **base.facts(), reason_code="LIMIT", reason_message="m\x00", decided_at=utc_now()
    )
    assert admission.problem(tabbed) is not None and admission.problem(nul) is not None
    assert admission.storable(tabbed).reason_code == "UNPROCESSABLE_RECORD"
    assert admission.problem(admission.storable(nul)) is None


def test_a_gateway_answer_is_checked_only_where_it_is_written() -> None:
    item, _plan = held()
    declined = answer(item, "DECLINED").model_copy(update={"reason_message": "no\x00"})
    captured = answer(item, "CAPTURED", "20").model_copy(update={"reason_message": "no\x00"})
    assert admission.problem(declined) is not None
    assert admission.problem(captured) is None  # a capture's message is not stored


def test_a_shard_credit_is_checked_like_its_transaction() -> None:
    base = command(TransactionType.TRANSFER, A, B, "5")
    leg = CreditFromShard(
        **base.facts(),
        decided_at=utc_now(),
        from_shard=0,
        to_shard=1,
        wallet_id=B,
        credit_amount=Decimal(5),
        debited_at=utc_now(),
    )
    assert admission.problem(leg) is None
    assert admission.problem(leg.model_copy(update={"description": "\x00"})) is not None


def test_unprocessable_command_fails_alone_and_is_announced() -> None:
    good = command(TransactionType.TRANSFER, A, B, "10")
    bad = poisoned(POISON["big integer in metadata"])
    refusal = admission.problem(bad)
    plan = plan_batch(
        [admission.storable(bad), good],
        set(),
        book(customer(A, "100"), customer(B, "0")),
        NOW,
        unprocessable={bad.event_id: refusal},
    )
    assert plan.posted == 1 and plan.failed == 1
    [failed_row] = [r for r in plan.transactions if r[0] == bad.transaction_id]
    assert failed_row[TX_STATUS] == "FAILED" and failed_row[TX_METADATA] == {}
    assert (bad.transaction_id, "FAILED", "FAILURE", "UNPROCESSABLE_RECORD") in events_of(plan)
    [announced] = [e for e in plan.ledger_events if isinstance(e, TransactionFailed)]
    assert announced.transaction_id == bad.transaction_id
    assert announced.reason_code == "UNPROCESSABLE_RECORD"
    assert plan.dead_letters[bad.event_id].startswith("UNPROCESSABLE_RECORD: metadata['n']")
    assert [e.transaction_id for e in plan.ledger_events if isinstance(e, TransactionPosted)] == [
        good.transaction_id
    ]


def test_unprocessable_facts_leave_no_row_but_are_announced() -> None:
    bad = command(TransactionType.TRANSFER, A, A, "10")
    refusal = admission.problem(bad)
    plan = plan_batch(
        [bad], set(), book(customer(A, "100")), NOW, unprocessable={bad.event_id: refusal}
    )
    assert plan.transactions == [] and plan.events == [] and plan.entries == []
    assert [type(e) for e in plan.ledger_events] == [TransactionFailed]
    assert bad.event_id in plan.dead_letters


def test_an_unprocessable_rejection_is_recorded_without_announcement() -> None:
    base = command(TransactionType.WITHDRAWAL, A, None, "5", transaction_id=uuid.uuid4())
    bad = TransactionRejected(
        **base.facts(), reason_code="LIMIT_EXCEEDED", reason_message="x\x00", decided_at=utc_now()
    )
    plan = plan_batch(
        [admission.storable(bad)],
        set(),
        book(customer(A, "100")),
        NOW,
        unprocessable={bad.event_id: admission.problem(bad)},
    )
    assert [r[TX_STATUS] for r in plan.transactions] == ["FAILED"]
    assert plan.ledger_events == []  # the stream reserved nothing for a rejection
    assert bad.event_id in plan.dead_letters


def test_an_unprocessable_record_already_posted_is_a_duplicate() -> None:
    bad = poisoned(POISON["NUL in description"])
    plan = plan_batch(
        [admission.storable(bad)],
        {bad.transaction_id: "COMPLETED"},
        book(customer(A, "100"), customer(B, "0")),
        NOW,
        unprocessable={bad.event_id: admission.problem(bad)},
    )
    assert plan.skipped_duplicates == 1 and plan.transactions == [] and not plan.dead_letters


def test_an_unprocessable_gateway_answer_releases_its_hold() -> None:
    item, first = held()
    bad = answer(item, "DECLINED").model_copy(update={"reason_message": "x\x00"})
    plan = plan_batch(
        [bad],
        set(),
        first.accounts,
        NOW,
        two_phase=TWO_PHASE,
        holds=first.holds,
        unprocessable={bad.event_id: admission.problem(bad)},
    )
    assert plan.accounts[A].reserved == 0 and plan.accounts[A].available == Decimal(100)
    assert plan.status_updates == [(item.transaction_id, "FAILED", None)]
    assert plan.holds_closed[0][1] == "REFUSED"
    [failed] = plan.ledger_events
    assert isinstance(failed, TransactionFailed) and failed.reason_code == "UNPROCESSABLE_RECORD"
    assert bad.event_id in plan.dead_letters


def test_an_unprocessable_answer_to_no_open_hold_is_only_dead_lettered() -> None:
    bad = GatewayResponded(
        transaction_id=uuid.uuid4(),
        wallet_id=A,
        outcome="DECLINED",
        reason_message="x\x00",
        responded_at=utc_now(),
    )
    plan = plan_batch(
        [bad], set(), book(), NOW, unprocessable={bad.event_id: admission.problem(bad)}
    )
    assert (
        plan.ignored_results == 1 and plan.ledger_events == [] and bad.event_id in plan.dead_letters
    )

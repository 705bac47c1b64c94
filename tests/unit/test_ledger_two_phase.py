"""Two-phase holds, gateway answers, expiry and reversals in the pure batch planner."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from domain.records import GatewayResponded, TransactionFailed, TransactionPosted, utc_now
from domain.transactions import TransactionType
from ledger_writer.planning import BatchPlan, Original, TwoPhase, plan_batch
from tests.unit.test_ledger_planning import (
    CLEARING,
    FEES,
    NOW,
    A,
    B,
    D,
    book,
    command,
    customer,
    entries_of,
    events_of,
)

TWO_PHASE = TwoPhase(hold_timeout=timedelta(seconds=30))


def held(amount: str = "20", fee: str = "0.20", destination: uuid.UUID | None = None):
    """A payment from A, planned into a hold: (the command, the plan)."""
    item = command(TransactionType.PAYMENT, A, destination, amount, fee)
    plan = plan_batch(
        [item], set(), book(customer(A, "100"), customer(B, "0")), NOW, two_phase=TWO_PHASE
    )
    return item, plan


def answer(item, outcome: str, captured: str | None = None) -> GatewayResponded:
    return GatewayResponded(
        transaction_id=item.transaction_id,
        wallet_id=A,
        outcome=outcome,  # type: ignore[arg-type]
        captured_amount=None if captured is None else D(captured),
        responded_at=utc_now(),
    )


def second_phase(plan: BatchPlan, *inputs, expired=()) -> BatchPlan:
    return plan_batch(
        list(inputs),
        set(),
        plan.accounts,
        NOW,
        two_phase=TWO_PHASE,
        holds=plan.holds,
        expired=expired,
    )


def test_payment_is_held_not_posted() -> None:
    item, plan = held()
    assert plan.held == 1 and plan.posted == 0 and plan.entries == []
    assert (plan.accounts[A].available, plan.accounts[A].reserved) == (D("79.80"), D("20.20"))
    assert plan.transactions[0][2] == "PENDING"
    t = item.transaction_id
    assert events_of(plan) == [
        (t, "INITIATED", "SUCCESS", None),
        (t, "AUTHORIZED", "PENDING", None),
    ]
    [request] = plan.gateway_requests
    assert request.transaction_id == t and request.hold_expires_at == NOW + timedelta(seconds=30)
    assert plan.ledger_events == []  # the stream keeps its own hold until the end


def test_hold_refused_without_funds_moves_nothing() -> None:
    item = command(TransactionType.WITHDRAWAL, A, None, "100.01")
    plan = plan_batch([item], set(), book(customer(A, "100")), NOW, two_phase=TWO_PHASE)
    assert plan.held == 0 and plan.failed == 1 and plan.holds_opened == []
    assert plan.accounts[A].reserved == 0


def test_full_capture_posts_and_closes_the_hold() -> None:
    item, first = held()
    plan = second_phase(first, answer(item, "CAPTURED", "20"))
    t = item.transaction_id
    assert entries_of(plan) == [
        (t, A, "DEBIT", D("20.20"), D("79.80")),
        (t, CLEARING, "CREDIT", D("20"), D("20")),
        (t, FEES, "CREDIT", D("0.20"), D("0.20")),
    ]
    assert (plan.accounts[A].available, plan.accounts[A].reserved) == (D("79.80"), 0)
    assert plan.status_updates == [(t, "COMPLETED", NOW)]
    assert plan.holds_closed == [(t, "CAPTURED", D("20"), NOW)]
    [event] = plan.ledger_events
    assert isinstance(event, TransactionPosted) and event.captured_amount == D("20")


def test_partial_capture_releases_the_rest() -> None:
    item, first = held(destination=B)
    plan = second_phase(first, answer(item, "CAPTURED", "5"))
    assert (plan.accounts[A].available, plan.accounts[A].reserved) == (D("94.80"), 0)
    assert plan.accounts[B].available == D("5")
    assert (
        plan.events[-1][4]["captured"] == "5.0000" and plan.events[-1][4]["released"] == "15.0000"
    )


@pytest.mark.parametrize(
    ("outcome", "code"), [("DECLINED", "GATEWAY_DECLINED"), ("VOIDED", "VOIDED")]
)
def test_decline_and_void_release_everything(outcome: str, code: str) -> None:
    item, first = held()
    plan = second_phase(first, answer(item, outcome))
    assert (plan.accounts[A].available, plan.accounts[A].reserved) == (D("100"), 0)
    assert plan.entries == [] and plan.status_updates == [(item.transaction_id, "FAILED", None)]
    [event] = plan.ledger_events
    assert isinstance(event, TransactionFailed) and event.reason_code == code


def test_expiry_releases_and_a_late_answer_is_ignored() -> None:
    item, first = held()
    expired = second_phase(first, expired=[item.transaction_id])
    assert expired.ledger_events[0].reason_code == "HOLD_EXPIRED"  # type: ignore[union-attr]
    assert expired.holds_closed[0][1] == "EXPIRED"
    late = second_phase(expired, answer(item, "CAPTURED", "20"))
    assert late.ignored_results == 1 and late.entries == [] and late.ledger_events == []


@pytest.mark.parametrize("captured", ["0", "20.01"])
def test_capture_outside_the_hold_is_dead_lettered(captured: str) -> None:
    item, first = held()
    result = answer(item, "CAPTURED", captured)
    plan = second_phase(first, result)
    assert result.event_id in plan.dead_letters
    assert plan.entries == [] and plan.holds[item.transaction_id].open


def test_repeated_answer_applies_once() -> None:
    item, first = held()
    result = answer(item, "CAPTURED", "20")
    plan = second_phase(first, result, result)
    assert plan.posted == 1 and plan.ignored_results == 1 and len(plan.entries) == 3


def original(kind=TransactionType.TRANSFER, moved="50", reversed_="0", status="COMPLETED"):
    return Original(
        kind,
        status,
        A,
        B if kind is TransactionType.TRANSFER else None,
        "USD",
        D(moved),
        D(reversed_),
    )


def refund(
    original_id: uuid.UUID, amount: str, source=B, destination=A, kind=TransactionType.TRANSFER
):
    item = command(kind, source, destination, amount)
    return item.model_copy(update={"metadata": {"reversal_of": str(original_id)}})


def test_partial_then_full_reversal() -> None:
    oid = uuid.uuid4()
    accounts = book(customer(A, "0"), customer(B, "50"))
    first = plan_batch([refund(oid, "20")], set(), accounts, NOW, originals={oid: original()})
    assert first.posted == 1 and first.status_updates == []
    assert first.originals[oid].reversed == D("20")
    assert [e[2] for e in first.events][-1] == "REVERSED"
    rest = plan_batch([refund(oid, "30")], set(), first.accounts, NOW, originals=first.originals)
    assert rest.status_updates == [(oid, "REVERSED", None)]
    assert rest.accounts[A].available == D("50") and rest.accounts[B].available == 0


@pytest.mark.parametrize(
    ("orig", "item", "code"),
    [
        (original(), "60", "REVERSAL_EXCEEDS_ORIGINAL"),
        (original(reversed_="45"), "5.01", "REVERSAL_EXCEEDS_ORIGINAL"),
        (original(status="REVERSED"), "1", "TRANSACTION_NOT_REVERSIBLE"),
        (original(status="PENDING"), "1", "TRANSACTION_NOT_REVERSIBLE"),
        (None, "1", "TRANSACTION_NOT_REVERSIBLE"),
    ],
)
def test_reversal_refused(orig, item: str, code: str) -> None:
    oid = uuid.uuid4()
    accounts = book(customer(A, "0"), customer(B, "100"))
    plan = plan_batch(
        [refund(oid, item)], set(), accounts, NOW, originals={} if orig is None else {oid: orig}
    )
    assert plan.posted == 0 and plan.entries == [] and plan.reversals == []
    assert plan.ledger_events[0].reason_code == code  # type: ignore[union-attr]


def test_reversal_must_mirror_the_original() -> None:
    oid = uuid.uuid4()
    accounts = book(customer(A, "100"), customer(B, "100"))
    wrong_way = refund(oid, "1", source=A, destination=B)
    plan = plan_batch([wrong_way], set(), accounts, NOW, originals={oid: original()})
    assert plan.ledger_events[0].reason_code == "REVERSAL_MISMATCH"  # type: ignore[union-attr]


def test_reversal_of_an_outside_payment_is_a_deposit_and_never_held() -> None:
    oid = uuid.uuid4()
    accounts = book(customer(A, "0"))
    item = refund(oid, "15", source=None, destination=A, kind=TransactionType.DEPOSIT)
    paid = original(kind=TransactionType.PAYMENT, moved="15")
    plan = plan_batch([item], set(), accounts, NOW, two_phase=TWO_PHASE, originals={oid: paid})
    assert plan.posted == 1 and plan.held == 0 and plan.accounts[A].available == D("15")
    assert plan.status_updates == [(oid, "REVERSED", None)]


def test_a_replayed_command_of_a_held_payment_keeps_the_streams_hold() -> None:
    item, first = held()
    again = plan_batch(
        [item],
        {item.transaction_id},
        first.accounts,
        NOW,
        two_phase=TWO_PHASE,
        pending={item.transaction_id},
    )
    assert again.skipped_duplicates == 1 and again.ledger_events == []
    same_batch = plan_batch([item, item], set(), first.accounts, NOW, two_phase=TWO_PHASE)
    assert same_batch.held == 1 and same_batch.skipped_duplicates == 1
    assert len(same_batch.ledger_events) == 0

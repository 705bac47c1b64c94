"""Reversals (refunds) through every service: partial and full, never beyond the original,
held first on the wallet that pays back, idempotent, each with its own events."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest

from tests.e2e.test_two_phase import pay
from tests.helpers import accepted, balance, funded_wallet, new_wallet, sql, wait_final

pytestmark = pytest.mark.e2e


def reverse(api: httpx.Client, transaction_id: str, amount: str, key: str | None = None):
    return api.post(
        f"/v1/transactions/{transaction_id}/reversals",
        json={"amount": amount},
        headers={"Idempotency-Key": key or str(uuid.uuid4())},
    )


def transfer(api: httpx.Client, source: str, destination: str, amount: str) -> str:
    transaction_id = accepted(
        api,
        {
            "transaction_type": "TRANSFER",
            "source_wallet_id": source,
            "destination_wallet_id": destination,
            "amount": amount,
            "currency_code": "USD",
        },
    )
    assert wait_final(api, transaction_id)["status"] == "COMPLETED"
    return transaction_id


def test_partial_then_full_reversal_of_a_transfer(api: httpx.Client, running: dict) -> None:
    alice, bob = funded_wallet(api), new_wallet(api)
    original = transfer(api, alice, bob, "50.00")

    first = reverse(api, original, "20.00")
    assert first.status_code == 202, first.text
    assert first.json()["transaction_type"] == "TRANSFER"
    part = wait_final(api, first.json()["transaction_id"])
    assert part["status"] == "COMPLETED"
    assert (part["source_wallet_id"], part["destination_wallet_id"]) == (bob, alice)
    assert balance(api, alice) == Decimal("70.00") and balance(api, bob) == Decimal("30.00")
    after_part = wait_final(api, original)
    assert after_part["status"] == "COMPLETED"  # partly reversed: still completed
    assert after_part["events"][-1]["event_type"] == "REVERSED"
    assert after_part["events"][-1]["event_data"]["reversed_total"] == "20.0000"

    too_much = reverse(api, original, "30.01")
    assert too_much.status_code == 422
    assert too_much.json()["error"]["code"] == "REVERSAL_EXCEEDS_ORIGINAL"

    rest = reverse(api, original, "30.00")
    assert wait_final(api, rest.json()["transaction_id"])["status"] == "COMPLETED"
    assert wait_final(api, original)["status"] == "REVERSED"
    assert balance(api, alice) == Decimal("100.00") and balance(api, bob) == Decimal(0)
    again = reverse(api, original, "1.00")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "TRANSACTION_NOT_REVERSIBLE"
    rows = sql(
        running["DATABASE_URL"],
        "SELECT sum(amount) FROM ledger_reversals WHERE original_id = %s",
        (original,),
    )
    assert rows == [(Decimal("50.0000"),)]


def test_racing_reversals_never_exceed_the_original(api: httpx.Client) -> None:
    alice, bob = funded_wallet(api), funded_wallet(api)  # bob could pay back both
    original = transfer(api, alice, bob, "50.00")
    # Both pass the API's check (nothing reversed yet) and the stream's hold on bob's 150;
    # the ledger refuses the second.
    first, second = reverse(api, original, "30.00"), reverse(api, original, "30.00")
    assert first.status_code == second.status_code == 202
    outcomes = sorted(
        (
            wait_final(api, r.json()["transaction_id"])["status"],
            wait_final(api, r.json()["transaction_id"])["failure_code"],
        )
        for r in (first, second)
    )
    assert outcomes == [("COMPLETED", None), ("FAILED", "REVERSAL_EXCEEDS_ORIGINAL")]
    assert balance(api, alice) == Decimal("80.00") and balance(api, bob) == Decimal("120.00")


def test_the_wallet_that_pays_back_is_held_and_never_goes_negative(api: httpx.Client) -> None:
    alice, bob = funded_wallet(api), new_wallet(api)
    original = transfer(api, alice, bob, "50.00")
    spent = pay(api, bob, "40.00", None)  # bob spends most of it (1% fee: 40.40)
    assert wait_final(api, spent)["status"] == "COMPLETED"
    refund = reverse(api, original, "50.00")
    assert refund.status_code == 202
    final = wait_final(api, refund.json()["transaction_id"])
    assert (final["status"], final["failure_code"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert balance(api, bob) == Decimal("9.60") and balance(api, alice) == Decimal("50.00")


def test_reversal_of_a_partial_capture_is_bounded_by_what_was_captured(
    api: httpx.Client,
) -> None:
    alice = funded_wallet(api)
    payment = pay(api, alice, "50.00", "capture:20.00")
    assert wait_final(api, payment)["status"] == "COMPLETED"
    assert reverse(api, payment, "20.01").status_code == 422
    refund = reverse(api, payment, "20.00")
    assert refund.json()["transaction_type"] == "DEPOSIT"  # back from outside
    assert wait_final(api, refund.json()["transaction_id"])["status"] == "COMPLETED"
    assert wait_final(api, payment)["status"] == "REVERSED"
    assert balance(api, alice) == Decimal("99.50")  # the fee is not refunded


def test_reversal_is_idempotent_and_checks_its_input(api: httpx.Client) -> None:
    # bob has money of his own: the reversal must not depend on the stream having applied
    # the transfer's credit yet (a hop after the ledger's COMPLETED; another test covers it).
    alice, bob = funded_wallet(api), funded_wallet(api)
    original = transfer(api, alice, bob, "10.00")
    key = str(uuid.uuid4())
    one, two = reverse(api, original, "5.00", key), reverse(api, original, "5.00", key)
    assert one.status_code == two.status_code == 202
    assert one.json()["transaction_id"] == two.json()["transaction_id"]
    assert reverse(api, original, "6.00", key).status_code == 409  # same key, other body
    assert reverse(api, str(uuid.uuid4()), "1.00").status_code == 404
    assert reverse(api, original, "1.001").json()["error"]["code"] == "INVALID_AMOUNT"
    assert reverse(api, original, "-1").status_code == 422
    missing_key = api.post(f"/v1/transactions/{original}/reversals", json={"amount": "1.00"})
    assert missing_key.status_code == 422
    assert wait_final(api, one.json()["transaction_id"])["status"] == "COMPLETED"
    assert balance(api, bob) == Decimal("105.00")  # 100 + 10 - 5: reversed once, not twice

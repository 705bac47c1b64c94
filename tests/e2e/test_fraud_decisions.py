"""Fraud decisions end to end: the scorer's rules decline or hold a spend far above the
wallet's habit to a new counterparty; analysts approve or decline held ones through
/v1/reviews, and an undecided review is declined at its deadline."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.helpers import accepted, balance, make_client, new_wallet, once_credited, wait_final


def pay(api: httpx.Client, source: str, to: str, amount: str) -> str:
    return accepted(
        api,
        {
            "transaction_type": "PAYMENT",
            "source_wallet_id": source,
            "destination_wallet_id": to,
            "amount": amount,
            "currency_code": "USD",
        },
    )


def habitual_wallet(api: httpx.Client) -> str:
    """Funded with 1000.00, then three 5.00 payments to one shop: a habit of 5.00.

    The money comes as a transfer from another wallet: a deposit would be the wallet's own
    transaction, in its 30-day mean amount (the feature engine counts every transaction of
    the wallet that pays, and a deposit is paid into it), and hide the habit."""
    wallet, shop, funder = new_wallet(api), new_wallet(api), new_wallet(api)
    deposit = accepted(
        api,
        {
            "transaction_type": "DEPOSIT",
            "destination_wallet_id": funder,
            "amount": "1000.00",
            "currency_code": "USD",
        },
    )
    assert wait_final(api, deposit)["status"] == "COMPLETED"
    transfer = {
        "transaction_type": "TRANSFER",
        "source_wallet_id": funder,
        "destination_wallet_id": wallet,
        "amount": "1000.00",
        "currency_code": "USD",
    }
    assert once_credited(api, lambda: accepted(api, transfer))["status"] == "COMPLETED"
    habit = once_credited(api, lambda: pay(api, wallet, shop, "5.00"))
    assert habit["status"] == "COMPLETED", habit
    for _ in range(2):
        assert wait_final(api, pay(api, wallet, shop, "5.00"))["status"] == "COMPLETED"
    return wallet


@pytest.fixture(scope="module")
def analyst(running: dict[str, str]) -> Any:
    with httpx.Client(
        base_url=running["INGEST_URL"],
        timeout=30,
        headers={"X-API-Key": make_client(running["DATABASE_URL"], role="analyst")},
    ) as client:
        yield client


def pending_review(analyst: httpx.Client, transaction_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = analyst.get("/v1/reviews")
        assert answer.status_code == 200, answer.text
        for review in answer.json()["reviews"]:
            if review["transaction_id"] == transaction_id:
                return dict(review)
        time.sleep(0.2)
    raise AssertionError(f"transaction {transaction_id} was not held for review")


def test_far_above_habit_to_a_new_payee_is_declined(api: httpx.Client) -> None:
    wallet = habitual_wallet(api)
    before = balance(api, wallet)
    result = wait_final(api, pay(api, wallet, new_wallet(api), "400.00"))  # 80x the habit
    assert result["status"] == "FAILED"
    assert result["failure_code"] == "FRAUD_DECLINED"
    assert Decimal(result["risk_score"]) >= Decimal("85")
    assert balance(api, wallet) == before


def test_review_approved_by_an_analyst_posts(api: httpx.Client, analyst: httpx.Client) -> None:
    wallet = habitual_wallet(api)
    held = pay(api, wallet, new_wallet(api), "100.00")  # 20x the habit
    review = pending_review(analyst, held)
    assert Decimal("60") <= Decimal(review["risk_score"]) < Decimal("85")
    assert api.get(f"/v1/transactions/{held}").json()["status"] == "PENDING"
    decided = analyst.post(f"/v1/reviews/{held}/approve", json={"note": "called the customer"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "APPROVED"
    result = wait_final(api, held)
    assert result["status"] == "COMPLETED"
    assert Decimal(result["risk_score"]) == Decimal(review["risk_score"])
    again = analyst.post(f"/v1/reviews/{held}/decline")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "REVIEW_DECIDED")


def test_review_declined_by_an_analyst_releases_the_hold(
    api: httpx.Client, analyst: httpx.Client
) -> None:
    wallet = habitual_wallet(api)
    before = balance(api, wallet)
    held = pay(api, wallet, new_wallet(api), "100.00")
    pending_review(analyst, held)
    assert analyst.post(f"/v1/reviews/{held}/decline").status_code == 200
    result = wait_final(api, held)
    assert (result["status"], result["failure_code"]) == ("FAILED", "FRAUD_DECLINED")
    assert "declined on review" in result["failure_reason"]
    assert balance(api, wallet) == before
    # The released hold is spendable again: the whole balance can go to the known shop.
    everything = wait_final(api, pay(api, wallet, new_wallet(api), "5.00"))
    assert everything["status"] == "COMPLETED"


def test_undecided_review_is_declined_at_its_deadline(
    api: httpx.Client, analyst: httpx.Client, running: dict[str, str]
) -> None:
    timeout_s = int(running.get("STREAMS_REVIEW_TIMEOUT_S", "300"))
    if timeout_s > 30:
        pytest.skip("the e2e run must set STREAMS_REVIEW_TIMEOUT_S (tests/e2e/conftest.py)")
    wallet = habitual_wallet(api)
    held = pay(api, wallet, new_wallet(api), "100.00")
    pending_review(analyst, held)
    result = wait_final(api, held, timeout_s=timeout_s + 20)
    assert (result["status"], result["failure_code"]) == ("FAILED", "FRAUD_DECLINED")
    assert "timeout" in result["failure_reason"]
    expired = analyst.get("/v1/reviews", params={"status": "EXPIRED"}).json()["reviews"]
    assert held in {review["transaction_id"] for review in expired}


def test_reviews_are_for_analysts_only(api: httpx.Client, analyst: httpx.Client) -> None:
    answer = api.get("/v1/reviews")
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "REVIEWER_ONLY")
    unknown = analyst.post("/v1/reviews/00000000-0000-4000-8000-000000000000/approve")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "REVIEW_NOT_FOUND")
    bad = analyst.get("/v1/reviews", params={"status": "MAYBE"})
    assert bad.status_code == 422

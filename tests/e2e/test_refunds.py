"""Refunds between two real clients through every service: the payer's client cannot take
money back out of the payee's wallet; it asks, and the payee's client grants (the reversal
is held, posted and checked like any) or refuses; a payee refunds directly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from tests.helpers import accepted, balance, funded_wallet, make_client, sql, wait_final

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def merchant(running: dict) -> Iterator[httpx.Client]:
    """Client B: a merchant with a wallet of its own (another tenant than the demo key)."""
    key = make_client(running["DATABASE_URL"], role="customer_app,pos")
    with httpx.Client(
        base_url=running["INGEST_URL"], timeout=30, headers={"X-API-Key": key}
    ) as client:
        yield client


@pytest.fixture(scope="module")
def stranger(running: dict) -> Iterator[httpx.Client]:
    key = make_client(running["DATABASE_URL"])
    with httpx.Client(
        base_url=running["INGEST_URL"], timeout=30, headers={"X-API-Key": key}
    ) as client:
        yield client


def transfer(api: httpx.Client, source: str, destination: str, amount: str) -> str:
    body = {
        "transaction_type": "TRANSFER",
        "source_wallet_id": source,
        "destination_wallet_id": destination,
        "amount": amount,
        "currency_code": "USD",
    }
    transaction_id = accepted(api, body)
    assert wait_final(api, transaction_id)["status"] == "COMPLETED"
    return transaction_id


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def ask(api: httpx.Client, original: str, amount: str, **extra: str) -> httpx.Response:
    return api.post(
        f"/v1/transactions/{original}/refund-requests",
        json={"amount": amount, **extra},
        headers=key(),
    )


def test_a_payer_cannot_take_money_back_from_the_payees_wallet(
    api: httpx.Client, merchant: httpx.Client, running: dict
) -> None:
    alice, shop = funded_wallet(api), funded_wallet(merchant)
    original = transfer(api, alice, shop, "40.00")
    assert balance(merchant, shop) == Decimal("140.00")

    clawback = api.post(
        f"/v1/transactions/{original}/reversals", json={"amount": "40.00"}, headers=key()
    )
    assert clawback.status_code == 403
    assert clawback.json()["error"]["code"] == "REFUND_REQUEST_REQUIRED"
    assert balance(merchant, shop) == Decimal("140.00")
    assert balance(api, alice) == Decimal("60.00")
    assert sql(
        running["DATABASE_URL"],
        "SELECT count(*) FROM transaction_requests WHERE record->'metadata'->>'reversal_of' = %s",
        (original,),
    ) == [(0,)]


def test_request_then_grant_moves_the_money_back(
    api: httpx.Client, merchant: httpx.Client, stranger: httpx.Client
) -> None:
    alice, shop = funded_wallet(api), funded_wallet(merchant)
    original = transfer(api, alice, shop, "40.00")

    asked = ask(api, original, "40.00", description="never delivered")
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert (request["status"], Decimal(request["amount"]), request["payee_wallet_id"]) == (
        "PENDING",
        Decimal("40.00"),
        shop,
    )
    request_id = request["refund_request_id"]
    incoming = merchant.get("/v1/refund-requests", params={"direction": "incoming"}).json()
    assert request_id in [r["refund_request_id"] for r in incoming["refund_requests"]]
    outgoing = api.get("/v1/refund-requests", params={"direction": "outgoing"}).json()
    assert request_id in [r["refund_request_id"] for r in outgoing["refund_requests"]]
    assert stranger.get(f"/v1/refund-requests/{request_id}").status_code == 404
    own = api.post(f"/v1/refund-requests/{request_id}/grant")
    assert (own.status_code, own.json()["error"]["code"]) == (403, "REFUND_DECISION_FORBIDDEN")
    assert balance(merchant, shop) == Decimal("140.00")  # nothing moved by asking

    granted = merchant.post(f"/v1/refund-requests/{request_id}/grant", json={"note": "sorry"})
    assert granted.status_code == 202, granted.text
    reversal = granted.json()["reversal"]
    assert granted.json()["refund_request"]["status"] == "GRANTED"
    assert reversal["transaction_type"] == "TRANSFER" and Decimal(reversal["fee_amount"]) == 0
    final = wait_final(merchant, reversal["transaction_id"])  # submitted by the payee's client
    assert final["status"] == "COMPLETED"
    assert (final["source_wallet_id"], final["destination_wallet_id"]) == (shop, alice)
    assert balance(api, alice) == Decimal("100.00")
    assert balance(merchant, shop) == Decimal("100.00")
    assert wait_final(api, original)["status"] == "REVERSED"

    again = merchant.post(f"/v1/refund-requests/{request_id}/grant")
    assert again.status_code == 202
    assert again.json()["reversal"]["transaction_id"] == reversal["transaction_id"]
    refused = merchant.post(f"/v1/refund-requests/{request_id}/refuse")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "REFUND_REQUEST_DECIDED")
    assert balance(api, alice) == Decimal("100.00")  # granted twice, paid back once


def test_refused_and_cancelled_requests_move_nothing(
    api: httpx.Client, merchant: httpx.Client
) -> None:
    alice, shop = funded_wallet(api), funded_wallet(merchant)
    original = transfer(api, alice, shop, "10.00")
    too_much = ask(api, original, "10.01")
    assert too_much.json()["error"]["code"] == "REVERSAL_EXCEEDS_ORIGINAL"

    first = ask(api, original, "10.00").json()["refund_request_id"]
    refused = merchant.post(f"/v1/refund-requests/{first}/refuse", json={"note": "used"})
    assert refused.json()["status"] == "REFUSED" and refused.json()["decision_note"] == "used"
    late = merchant.post(f"/v1/refund-requests/{first}/grant")
    assert (late.status_code, late.json()["error"]["code"]) == (409, "REFUND_REQUEST_DECIDED")

    second = ask(api, original, "5.00").json()["refund_request_id"]
    assert merchant.post(f"/v1/refund-requests/{second}/cancel").status_code == 403
    assert api.post(f"/v1/refund-requests/{second}/cancel").json()["status"] == "CANCELLED"
    assert merchant.post(f"/v1/refund-requests/{second}/grant").status_code == 409
    assert balance(merchant, shop) == Decimal("110.00")
    assert balance(api, alice) == Decimal("90.00")


def test_the_payee_refunds_directly_and_requests_stay_bounded(
    api: httpx.Client, merchant: httpx.Client
) -> None:
    alice, shop = funded_wallet(api), funded_wallet(merchant)
    original = transfer(api, alice, shop, "40.00")
    pending = ask(api, original, "30.00").json()["refund_request_id"]

    direct = merchant.post(
        f"/v1/transactions/{original}/reversals", json={"amount": "20.00"}, headers=key()
    )
    assert direct.status_code == 202, direct.text
    assert wait_final(merchant, direct.json()["transaction_id"])["status"] == "COMPLETED"
    assert balance(api, alice) == Decimal("80.00")
    # 20 of 40 are left: the request for 30 cannot be granted any more.
    over = merchant.post(f"/v1/refund-requests/{pending}/grant")
    assert (over.status_code, over.json()["error"]["code"]) == (422, "REVERSAL_EXCEEDS_ORIGINAL")
    not_needed = ask(merchant, original, "1.00")
    assert not_needed.json()["error"]["code"] == "REFUND_REQUEST_NOT_NEEDED"
    assert balance(merchant, shop) == Decimal("120.00")


def test_a_refund_request_is_idempotent(api: httpx.Client, merchant: httpx.Client) -> None:
    alice, shop = funded_wallet(api), funded_wallet(merchant)
    original = transfer(api, alice, shop, "5.00")
    same = {"Idempotency-Key": str(uuid.uuid4())}
    url = f"/v1/transactions/{original}/refund-requests"
    one = api.post(url, json={"amount": "5.00"}, headers=same)
    two = api.post(url, json={"amount": "5.00"}, headers=same)
    assert one.json()["refund_request_id"] == two.json()["refund_request_id"]
    other = api.post(url, json={"amount": "4.00"}, headers=same)
    assert (other.status_code, other.json()["error"]["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert api.post(url, json={"amount": "5.00"}).json()["error"]["code"] == (
        "MISSING_IDEMPOTENCY_KEY"
    )

"""Spending limits end to end: managed through /v1/limits, applied by the stream within
seconds, LIMIT_EXCEEDED recorded as a FAILED transaction naming the limit."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from tests.helpers import accepted, make_client, new_user, new_wallet, wait_final

PROPAGATION_S = 20


def deposit(api: httpx.Client, wallet: str, amount: str) -> None:
    body = {
        "transaction_type": "DEPOSIT",
        "destination_wallet_id": wallet,
        "amount": amount,
        "currency_code": "USD",
    }
    assert wait_final(api, accepted(api, body))["status"] == "COMPLETED"


def spend(api: httpx.Client, wallet: str, amount: str, kind: str = "PAYMENT") -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_type": kind,
        "source_wallet_id": wallet,
        "amount": amount,
        "currency_code": "USD",
    }
    return wait_final(api, accepted(api, body))


def until_refused(api: httpx.Client, wallet: str, amount: str, kind: str = "PAYMENT") -> dict:
    """Spend until the stream has the new limit (each earlier try is an ordinary spend)."""
    deadline = time.monotonic() + PROPAGATION_S
    while time.monotonic() < deadline:
        result = spend(api, wallet, amount, kind)
        if result["status"] == "FAILED":
            return result
        time.sleep(0.2)
    raise AssertionError(f"the limit did not reach the stream within {PROPAGATION_S}s")


def create_limit(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    answer = api.post("/v1/limits", json={"max_count": 100, **fields})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_wallet_limit_is_applied_within_seconds_and_named(api: httpx.Client) -> None:
    wallet = new_wallet(api)
    deposit(api, wallet, "1000.00")
    limit = create_limit(
        api,
        wallet_id=wallet,
        transaction_type="PAYMENT",
        period_type="DAILY",
        max_amount="50.00",
    )
    assert limit["max_amount"] == "50.0000" and limit["user_id"] is None
    refused = until_refused(api, wallet, "60.00")
    assert refused["failure_code"] == "LIMIT_EXCEEDED"
    assert limit["limit_id"] in refused["failure_reason"]
    assert [e["event_type"] for e in refused["events"]] == ["INITIATED", "FAILED"]
    assert spend(api, wallet, "30.00")["status"] == "COMPLETED"
    second = spend(api, wallet, "30.00")  # 30 + 30 > 50 this day
    assert second["failure_code"] == "LIMIT_EXCEEDED"
    assert spend(api, wallet, "20.00")["status"] == "COMPLETED"  # exactly 50

    raised = api.patch(f"/v1/limits/{limit['limit_id']}", json={"max_amount": "200.00"})
    assert raised.status_code == 200, raised.text
    assert raised.json()["version"] == 2
    deadline = time.monotonic() + PROPAGATION_S
    while spend(api, wallet, "10.00")["status"] != "COMPLETED":
        assert time.monotonic() < deadline, "the raised limit did not reach the stream"
        time.sleep(0.2)

    assert api.delete(f"/v1/limits/{limit['limit_id']}").status_code == 204
    assert api.get(f"/v1/limits/{limit['limit_id']}").status_code == 404


def test_user_limit_reaches_every_wallet_of_the_user_even_new_ones(api: httpx.Client) -> None:
    user = new_user(api)
    first = new_wallet(api, user_id=user)
    create_limit(
        api,
        user_id=user,
        transaction_type="WITHDRAWAL",
        period_type="MONTHLY",
        max_amount="1000.00",
        max_count=1,
    )
    later = new_wallet(api, user_id=user)  # created after the limit: published on creation
    for wallet in (first, later):
        deposit(api, wallet, "100.00")
    refused = until_refused(api, first, "5.00", "WITHDRAWAL")
    assert refused["failure_code"] == "LIMIT_EXCEEDED"
    assert "USER MONTHLY WITHDRAWAL" in refused["failure_reason"]
    assert spend(api, later, "5.00", "WITHDRAWAL")["status"] == "COMPLETED"
    assert spend(api, later, "5.00", "WITHDRAWAL")["failure_code"] == "LIMIT_EXCEEDED"
    listed = api.get("/v1/limits", params={"user_id": user}).json()["limits"]
    assert [item["transaction_type"] for item in listed] == ["WITHDRAWAL"]


def test_limits_api_refuses_bad_input_with_stable_codes(
    api: httpx.Client, running: dict[str, str]
) -> None:
    user = new_user(api)
    wallet = new_wallet(api, user_id=user)
    base = {
        "transaction_type": "PAYMENT",
        "period_type": "WEEKLY",
        "max_amount": "10.00",
        "max_count": 3,
    }

    def code(answer: httpx.Response) -> str:
        return str(answer.json()["error"]["code"])

    both = api.post("/v1/limits", json={**base, "user_id": user, "wallet_id": wallet})
    assert (both.status_code, code(both)) == (422, "INVALID_LIMIT_SCOPE")
    neither = api.post("/v1/limits", json=base)
    assert (neither.status_code, code(neither)) == (422, "INVALID_LIMIT_SCOPE")
    for bad in ({"max_amount": 10}, {"max_amount": "-1"}, {"max_amount": "1.00001"}):
        answer = api.post("/v1/limits", json={**base, "wallet_id": wallet, **bad})
        assert (answer.status_code, code(answer)) == (422, "INVALID_FIELD"), bad
    hourly = api.post("/v1/limits", json={**base, "wallet_id": wallet, "period_type": "HOURLY"})
    assert (hourly.status_code, code(hourly)) == (422, "INVALID_FIELD")
    extra = api.post("/v1/limits", json={**base, "wallet_id": wallet, "current_amount": "0"})
    assert (extra.status_code, code(extra)) == (422, "UNKNOWN_FIELD")
    missing = api.post("/v1/limits", json={**base, "wallet_id": str(uuid.uuid4())})
    assert (missing.status_code, code(missing)) == (404, "WALLET_NOT_FOUND")

    created = api.post("/v1/limits", json={**base, "wallet_id": wallet})
    assert created.status_code == 201, created.text
    again = api.post("/v1/limits", json={**base, "wallet_id": wallet})
    assert (again.status_code, code(again)) == (409, "LIMIT_EXISTS")
    limit_id = created.json()["limit_id"]
    empty = api.patch(f"/v1/limits/{limit_id}", json={})
    assert (empty.status_code, code(empty)) == (422, "MISSING_FIELD")

    with httpx.Client(
        base_url=running["INGEST_URL"],
        timeout=30,
        headers={"X-API-Key": make_client(running["DATABASE_URL"])},
    ) as other:
        theirs = other.post("/v1/limits", json={**base, "wallet_id": wallet})
        assert (theirs.status_code, code(theirs)) == (403, "WALLET_FORBIDDEN")
        for answer in (
            other.get(f"/v1/limits/{limit_id}"),
            other.patch(f"/v1/limits/{limit_id}", json={"max_count": 9}),
            other.delete(f"/v1/limits/{limit_id}"),
        ):
            assert (answer.status_code, code(answer)) == (404, "LIMIT_NOT_FOUND")
        assert other.get("/v1/limits").json()["limits"] == []
    assert api.get(f"/v1/limits/{limit_id}").json()["max_count"] == 3
    assert api.get("/v1/limits").status_code == 200
    assert httpx.get(f"{running['INGEST_URL']}/v1/limits").status_code == 401

"""The ingest API's answers through the whole pipeline: the batch route and ``Prefer: wait``.

The batch's accepted items are real transactions (they end like any other), its bad items
are refused alone with the single route's codes, and a repeated batch answers every item
as first. A request that asks to wait gets either its final state (200, the same as the
transaction's own page says) or, if it did not end in time, the 202; either way the
preference is acknowledged. Whether it ends within the wait is a matter of speed, which
bench/ measures, not this test.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.helpers import new_wallet, wait_final

pytestmark = pytest.mark.e2e


def deposit(wallet: str, amount: str = "3.00") -> dict:
    return {
        "transaction_type": "DEPOSIT",
        "destination_wallet_id": wallet,
        "amount": amount,
        "currency_code": "USD",
    }


def test_a_batch_accepts_the_good_items_and_refuses_each_bad_one_alone(api: httpx.Client) -> None:
    wallet = new_wallet(api)
    keys = [str(uuid.uuid4()) for _ in range(5)]
    items = [
        {"idempotency_key": keys[0], "transaction": deposit(wallet)},
        {"idempotency_key": keys[1], "transaction": {**deposit(wallet), "amount": 3}},
        {"idempotency_key": keys[2], "transaction": deposit(str(uuid.uuid4()))},
        {"idempotency_key": keys[3], "transaction": deposit(wallet, "4.00")},
        {"transaction": deposit(wallet)},
        {"idempotency_key": keys[0], "transaction": deposit(wallet, "9.00")},
    ]
    answer = api.post("/v1/transactions/batch", json={"transactions": items})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert (got["accepted"], got["refused"]) == (2, 4)
    codes = [
        item.get("error", {}).get("code") if item["status"] != 202 else 202 for item in got["items"]
    ]
    assert codes == [
        202,
        "INVALID_AMOUNT",
        "WALLET_NOT_FOUND",
        202,
        "MISSING_IDEMPOTENCY_KEY",
        "IDEMPOTENCY_KEY_REUSED",
    ]
    first = got["items"][0]["transaction"]["transaction_id"]
    assert wait_final(api, first)["status"] == "COMPLETED"
    assert (
        wait_final(api, got["items"][3]["transaction"]["transaction_id"])["status"] == "COMPLETED"
    )
    again = api.post("/v1/transactions/batch", json={"transactions": items[:1]}).json()
    assert again["items"][0]["transaction"]["transaction_id"] == first
    single = api.post(
        "/v1/transactions", json=deposit(wallet), headers={"Idempotency-Key": keys[0]}
    )
    assert single.status_code == 202 and single.json()["transaction_id"] == first


def test_prefer_wait_answers_the_final_state_or_the_202(api: httpx.Client) -> None:
    wallet = new_wallet(api)
    answer = api.post(
        "/v1/transactions",
        json=deposit(wallet),
        headers={"Idempotency-Key": str(uuid.uuid4()), "Prefer": "wait=10"},
    )
    assert answer.status_code in (200, 202), answer.text
    assert answer.headers["Preference-Applied"] == "wait=10"
    transaction_id = answer.json()["transaction_id"]
    final = wait_final(api, transaction_id)
    if answer.status_code == 200:
        assert answer.json()["status"] == final["status"] == "COMPLETED"
    else:
        assert answer.json()["status"] == "PENDING"
    plain = api.post(
        "/v1/transactions", json=deposit(wallet), headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert plain.status_code == 202 and "Preference-Applied" not in plain.headers

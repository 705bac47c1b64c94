"""Webhooks end to end: a client subscribes real HTTP receivers; the notification service
delivers its transactions' outcomes signed, retries the attempts a receiver fails, keeps a
transaction's events in order, and a dead endpoint of the same client delays nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.test_fraud_decisions import habitual_wallet, pay
from tests.helpers import accepted, make_client, new_wallet, sql, wait_final
from tests.receiver import Receiver, serving, unanswering

TRANSACTION_EVENTS = [
    "transaction.completed",
    "transaction.failed",
    "transaction.review_requested",
    "review.decided",
]


def client_of(running: dict[str, str], role: str = "client") -> httpx.Client:
    key = make_client(running["DATABASE_URL"], role=role)
    return httpx.Client(base_url=running["INGEST_URL"], timeout=30, headers={"X-API-Key": key})


@pytest.fixture(scope="module")
def tenant(running: dict[str, str]) -> Iterator[httpx.Client]:
    with client_of(running) as client:
        yield client


@pytest.fixture(scope="module")
def analyst(running: dict[str, str]) -> Iterator[httpx.Client]:
    with client_of(running, "analyst") as client:
        yield client


@pytest.fixture(scope="module")
def stranger(running: dict[str, str]) -> Iterator[httpx.Client]:
    """Another tenant."""
    with client_of(running) as client:
        yield client


@pytest.fixture
def subscribe(running: dict[str, str]) -> Iterator[Callable[[httpx.Client, str], dict]]:
    """Subscribes endpoints, and deletes them after the test whatever happened (an endpoint
    left behind would be retried for the rest of the run)."""
    made: list[str] = []

    def make(client: httpx.Client, url: str, events: list[str] = TRANSACTION_EVENTS) -> dict:
        answer = client.post("/v1/webhooks", json={"url": url, "event_types": events})
        assert answer.status_code == 201, answer.text
        made.append(answer.json()["webhook"]["subscription_id"])
        return dict(answer.json())

    yield make
    # As DELETE /v1/webhooks/{id} does (webhook_store.delete).
    sql(
        running["DATABASE_URL"],
        "UPDATE webhook_subscriptions SET deleted_at = now()"
        " WHERE subscription_id = ANY(%s::uuid[]) AND deleted_at IS NULL",
        (made,),
    )
    sql(
        running["DATABASE_URL"],
        "UPDATE webhook_deliveries SET status = 'DEAD', finished_at = now()"
        " WHERE subscription_id = ANY(%s::uuid[]) AND status = 'PENDING'",
        (made,),
    )


def held_for_review(analyst: httpx.Client, tenant: httpx.Client, transaction_id: str) -> None:
    """Until the API lists the transaction's review (the stream held it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reviews = analyst.get("/v1/reviews").json()["reviews"]
        if any(r["transaction_id"] == transaction_id for r in reviews):
            return
        status = tenant.get(f"/v1/transactions/{transaction_id}").json()
        assert status["status"] == "PENDING", f"not held for review: {status}"
        time.sleep(0.2)
    raise AssertionError(f"transaction {transaction_id} was not held for review")


def test_outcomes_reach_endpoints_signed_retried_in_order_past_a_dead_one(
    running: dict[str, str],
    tenant: httpx.Client,
    analyst: httpx.Client,
    stranger: httpx.Client,
    subscribe: Callable[[httpx.Client, str], dict],
) -> None:
    with (
        serving(Receiver(fail_first=2)) as receiver,
        serving(Receiver()) as other_client_receiver,
        unanswering() as dead_url,
    ):
        other_client = stranger
        made = subscribe(tenant, receiver.url)
        receiver.secret = made["secret"]
        assert made["secret"].startswith("whsec_")
        assert made["webhook"]["secret_prefix"] == made["secret"][:12]
        dead = subscribe(tenant, dead_url)["webhook"]
        other = subscribe(other_client, other_client_receiver.url)
        other_client_receiver.secret = other["secret"]

        # A deposit that completes, a spend the stream rejects, a payment held for review
        # and approved: three events of one transaction, in that order.
        wallet = new_wallet(tenant)
        deposit = accepted(
            tenant,
            {
                "transaction_type": "DEPOSIT",
                "destination_wallet_id": wallet,
                "amount": "10.00",
                "currency_code": "USD",
            },
        )
        assert wait_final(tenant, deposit)["status"] == "COMPLETED"
        overdraft = pay(tenant, wallet, new_wallet(tenant), "50.00")
        assert wait_final(tenant, overdraft)["status"] == "FAILED"
        held = pay(tenant, habitual_wallet(tenant), new_wallet(tenant), "100.00")
        held_for_review(analyst, tenant, held)
        # Approved, unless the review's timeout (8 s here) declined it first on a slow box:
        # either way three events, in order.
        analyst.post(f"/v1/reviews/{held}/approve")
        outcome = wait_final(tenant, held)["status"]

        receiver.wait_for(lambda: len(receiver.of_transaction(held)) == 3)
        receiver.wait_for(lambda: bool(receiver.of_transaction(overdraft)))
        receiver.wait_for(lambda: bool(receiver.of_transaction(deposit)))

        review_events = [r.event["type"] for r in receiver.of_transaction(held)]
        assert review_events == [
            "transaction.review_requested",
            "review.decided",
            "transaction.completed" if outcome == "COMPLETED" else "transaction.failed",
        ]
        decided = receiver.of_transaction(held)[1].event
        assert decided["data"]["decision"] == ("APPROVE" if outcome == "COMPLETED" else "DECLINE")
        (failed,) = receiver.of_transaction(overdraft)
        assert failed.event["type"] == "transaction.failed"
        assert failed.event["data"]["reason_code"] == "INSUFFICIENT_FUNDS"
        (completed,) = receiver.of_transaction(deposit)
        assert completed.event["data"]["amount"] == "10.0000"
        # Every event was refused twice, then delivered on its third attempt, signed.
        assert {r.attempt for r in receiver.delivered} == {3}
        assert receiver.forged == []

        # The dead endpoint got the same events and has answered none of them, yet the
        # live one has everything: it was never waiting on the dead one.
        dead_rows = tenant.get(f"/v1/webhooks/{dead['subscription_id']}/deliveries").json()
        dead_deliveries = dead_rows["deliveries"]
        assert len(dead_deliveries) >= 5
        assert all(d["status"] == "PENDING" for d in dead_deliveries)
        assert any(d["attempts"] >= 1 for d in dead_deliveries)

        # Another client's endpoint sees none of this client's transactions, nor its
        # endpoints.
        mine = {deposit, overdraft, held}
        assert not any(
            r.event["data"]["transaction_id"] in mine for r in other_client_receiver.delivered
        )
        hidden = other_client.get(f"/v1/webhooks/{dead['subscription_id']}")
        assert (hidden.status_code, hidden.json()["error"]["code"]) == (404, "WEBHOOK_NOT_FOUND")
        listed = other_client.get("/v1/webhooks").json()["webhooks"]
        assert [w["subscription_id"] for w in listed] == [other["webhook"]["subscription_id"]]

        # Sent again on request: the same event id, delivered once more.
        live_id = made["webhook"]["subscription_id"]
        rows = tenant.get(f"/v1/webhooks/{live_id}/deliveries", params={"status": "DELIVERED"})
        first = next(d for d in rows.json()["deliveries"] if d["transaction_id"] == deposit)
        assert first["attempts"] == 3 and first["last_status_code"] == 204
        again = tenant.post(
            f"/v1/webhooks/{live_id}/redeliver", json={"delivery_ids": [first["delivery_id"]]}
        )
        assert again.status_code == 202, again.text
        assert [d["delivery_id"] for d in again.json()["deliveries"]] == [first["delivery_id"]]
        receiver.wait_for(lambda: len(receiver.of_transaction(deposit)) == 2)
        assert {r.event["id"] for r in receiver.of_transaction(deposit)} == {first["event_id"]}

        gone = tenant.delete(f"/v1/webhooks/{dead['subscription_id']}")
        assert gone.status_code == 200 and gone.json()["status"] == "DELETED"
        after = tenant.get(f"/v1/webhooks/{dead['subscription_id']}/deliveries").json()
        assert {d["status"] for d in after["deliveries"]} == {"DEAD"}


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hooks",
        "http://10.1.2.3/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00::1]/hooks",
        "http://user:secret@example.com/hooks",
    ],
)
def test_endpoints_into_internal_networks_are_refused(tenant: httpx.Client, url: str) -> None:
    answer = tenant.post("/v1/webhooks", json={"url": url, "event_types": ["review.decided"]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "WEBHOOK_ENDPOINT_REFUSED"


def test_webhooks_are_for_tenants_and_admins(analyst: httpx.Client, tenant: httpx.Client) -> None:
    answer = analyst.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "event_types": ["review.decided"]}
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "ROLE_FORBIDDEN")
    unknown = tenant.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "event_types": ["money.printed"]}
    )
    assert unknown.status_code == 422

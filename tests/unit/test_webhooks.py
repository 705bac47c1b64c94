"""Webhook rules without I/O: records to events, signatures, retry schedule, endpoint
addresses (domain/webhooks.py)."""

from __future__ import annotations

import ipaddress
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from domain import records
from domain.webhooks import (
    AddressPolicy,
    EndpointRefused,
    EventType,
    RetryPolicy,
    WebhookError,
    event_of,
    sign,
    verify,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLIENT = uuid.uuid4()


def facts(**extra: object) -> dict[str, object]:
    return {
        "transaction_id": uuid.uuid4(),
        "transaction_type": "PAYMENT",
        "source_wallet_id": uuid.uuid4(),
        "destination_wallet_id": uuid.uuid4(),
        "amount": Decimal("12.5000"),
        "fee_amount": Decimal("0.1250"),
        "total_amount": Decimal("12.6250"),
        "currency_code": "USD",
        "client_id": CLIENT,
        "idempotency_key": "k-1",
        "ip_address": "203.0.113.9",
        "requested_at": NOW,
        **extra,
    }


def as_json(record: records.Record) -> dict:
    return orjson.loads(records.encode(record))


def test_ledger_outcomes_become_transaction_events_of_their_client() -> None:
    posted = records.TransactionPosted(**facts(), risk_score=Decimal("3"), completed_at=NOW)
    event = event_of(as_json(posted))
    assert event is not None
    assert event.event_type is EventType.TRANSACTION_COMPLETED
    assert event.client_id == CLIENT and event.transaction_id == posted.transaction_id
    body = orjson.loads(event.body())
    assert body["type"] == "transaction.completed" and body["id"] == str(event.event_id)
    assert body["data"]["amount"] == "12.5000" and body["data"]["status"] == "COMPLETED"
    assert "ip_address" not in body["data"]  # inside the pipeline only


def test_a_rejection_and_a_ledger_failure_are_the_same_event() -> None:
    shared = facts()
    rejected = records.TransactionRejected(
        **shared, reason_code="FRAUD_DECLINED", reason_message="no", decided_at=NOW
    )
    failed = records.TransactionFailed(
        **shared, reason_code="INSUFFICIENT_FUNDS", reason_message="no", failed_at=NOW
    )
    first, second = event_of(as_json(rejected)), event_of(as_json(failed))
    assert first is not None and second is not None
    assert first.event_type is second.event_type is EventType.TRANSACTION_FAILED
    assert first.event_id == second.event_id  # stable: one failure per transaction
    # The same outcome relayed again under another record id is still the same event.
    again = event_of(as_json(rejected.model_copy(update={"event_id": uuid.uuid4()})))
    assert again is not None and again.event_id == first.event_id


def test_review_events_and_records_that_are_not_events() -> None:
    requested = records.ReviewRequested(
        **facts(), risk_score=Decimal("70"), decided_at=NOW, review_deadline=NOW
    )
    event = event_of(as_json(requested))
    assert event is not None and event.event_type is EventType.TRANSACTION_REVIEW_REQUESTED
    decided = records.ReviewDecided(
        transaction_id=requested.transaction_id,
        wallet_id=uuid.uuid4(),
        decision="APPROVE",
        decided_by="analyst",
        decided_at=NOW,
    )
    decision = event_of(as_json(decided))
    assert decision is not None and decision.event_type is EventType.REVIEW_DECIDED
    assert decision.client_id is None  # looked up by transaction
    assert decision.transaction_id == requested.transaction_id
    tick = records.ClockTicked(partition=0, ticked_at=NOW)
    assert event_of(as_json(tick)) is None
    # Read twice (a replay): the same event id.
    assert event_of(as_json(decided)).event_id == decision.event_id  # type: ignore[union-attr]


def test_signatures_match_only_the_same_body_and_secret_and_expire() -> None:
    body = b'{"id":"e"}'
    header = sign("whsec_a", 1_000_000, body)
    assert verify("whsec_a", header, body, now_s=1_000_010)
    assert not verify("whsec_b", header, body, now_s=1_000_010)
    assert not verify("whsec_a", header, body + b" ", now_s=1_000_010)
    assert not verify("whsec_a", header, body, now_s=1_000_000 + 301)  # a replay
    assert not verify("whsec_a", "v1=abc", body, now_s=1_000_000)
    assert not verify("whsec_a", "t=x,v1=abc", body, now_s=1_000_000)


def test_retries_double_with_jitter_up_to_a_cap_then_dead_letter() -> None:
    policy = RetryPolicy(base_s=10, delay_max_s=60, window_s=300, jitter=0.5)
    rng = random.Random(1)
    delays = [
        (policy.next_attempt_at(n, NOW, NOW, rng) - NOW).total_seconds()  # type: ignore[operator]
        for n in (1, 2, 3, 4, 5)
    ]
    for delay, full in zip(delays, (10, 20, 40, 60, 60), strict=True):
        assert full * 0.5 <= delay <= full
    late = NOW + timedelta(seconds=290)
    assert policy.next_attempt_at(9, NOW, late, rng) is None  # past the window: dead
    with pytest.raises(WebhookError):
        RetryPolicy(base_s=0)


def test_retries_without_jitter_are_exact() -> None:
    policy = RetryPolicy(base_s=1, delay_max_s=1000, window_s=86_400, jitter=0)
    at = policy.next_attempt_at(11, NOW, NOW, random.Random())
    assert at == NOW + timedelta(seconds=1000)  # 2**10 s, capped at the delay max
    assert policy.next_attempt_at(1, NOW, NOW, random.Random()) == NOW + timedelta(seconds=1)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http:///nohost",
        "https://user:pw@example.com/",
        "http://example.com:99999/",
        "example.com/hook",
    ],
)
def test_endpoints_are_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(EndpointRefused):
        AddressPolicy().endpoint(url)


def test_endpoint_ports_default_by_scheme() -> None:
    policy = AddressPolicy()
    assert policy.endpoint("https://example.com/x").port == 443
    assert policy.endpoint("http://example.com/x").port == 80
    assert policy.endpoint("http://example.com:8080/x").port == 8080


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",  # a private IPv4 address in IPv6 clothing
    ],
)
def test_internal_addresses_are_refused_by_default(address: str) -> None:
    assert not AddressPolicy().allows(ipaddress.ip_address(address))


def test_public_addresses_are_allowed_and_operators_allow_more() -> None:
    policy = AddressPolicy()
    assert policy.allows(ipaddress.ip_address("93.184.216.34"))
    assert policy.allows(ipaddress.ip_address("2606:2800:220:1::1"))
    loopback = AddressPolicy.parse(True, "")
    assert loopback.allows(ipaddress.ip_address("127.0.0.1"))
    assert loopback.allows(ipaddress.ip_address("::1"))
    assert not loopback.allows(ipaddress.ip_address("10.0.0.1"))
    network = AddressPolicy.parse(False, "10.20.0.0/16, 192.168.5.7")
    assert network.allows(ipaddress.ip_address("10.20.3.4"))
    assert network.allows(ipaddress.ip_address("192.168.5.7"))
    assert not network.allows(ipaddress.ip_address("10.21.0.1"))
    with pytest.raises(WebhookError):
        AddressPolicy.parse(False, "10.0.0.0/99")


def test_every_resolved_address_must_be_allowed() -> None:
    policy = AddressPolicy()
    assert policy.check("example.com", ["93.184.216.34"])
    with pytest.raises(EndpointRefused, match="10.0.0.1"):
        policy.check("rebind.example", ["93.184.216.34", "10.0.0.1"])
    with pytest.raises(EndpointRefused):
        policy.check("nothing.example", [])

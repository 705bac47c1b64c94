"""The pure parts of the ingest hot path: ids, the wallet cache, `Prefer: wait`, batch items."""

from __future__ import annotations

import time
import uuid

import pytest

from ingest_api.batch import decode_item
from ingest_api.caching import RevisionCache
from ingest_api.exceptions import ApiError
from ingest_api.outcomes import WAIT_S_MAX, Outcome, wait_preference
from ingest_api.submission import request_transaction_id

WALLET = "8a0b5f0c-31e4-4a7e-9d7a-2d6a4c1b9e01"
DEPOSIT = {
    "transaction_type": "DEPOSIT",
    "destination_wallet_id": WALLET,
    "amount": "10.00",
    "currency_code": "USD",
}


def test_transaction_ids_are_derived_from_client_and_key() -> None:
    client, other = uuid.uuid4(), uuid.uuid4()
    assert request_transaction_id(client, "k1") == request_transaction_id(client, "k1")
    assert request_transaction_id(client, "k1") != request_transaction_id(client, "k2")
    assert request_transaction_id(client, "k1") != request_transaction_id(other, "k1")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("wait=5", 5),
        ("respond-async, wait=3", 3),
        ("WAIT = 2", 2),
        ('wait="4"', 4),
        ("wait=0", 0),
        ("wait=600", WAIT_S_MAX),
        ("wait=" + "9" * 5000, WAIT_S_MAX),
        ("wait=-1", None),
        ("wait=1.5", None),
        ("wait=٣", None),
        ("return=minimal", None),
        ("", None),
        (None, None),
    ],
)
def test_prefer_wait_is_read_as_rfc_7240_says(header: str | None, seconds: int | None) -> None:
    assert wait_preference(header) == seconds


def test_outcomes_from_the_ending_records() -> None:
    posted = Outcome.of(
        {"kind": "TransactionPosted", "completed_at": "2026-01-01T00:00:00Z", "risk_score": "3.00"}
    )
    assert (posted.transaction_status, posted.failure_code, posted.risk_score) == (
        "COMPLETED",
        None,
        "3.00",
    )
    rejected = Outcome.of(
        {"kind": "TransactionRejected", "reason_code": "INSUFFICIENT_FUNDS", "reason_message": "no"}
    )
    assert (rejected.transaction_status, rejected.failure_code) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert rejected.completed_at is None


def test_the_revision_cache_serves_only_while_confirmed_and_forgets_on_a_new_revision() -> None:
    cache: RevisionCache[str, int] = RevisionCache(entries_max=2, trust_ms=1_000)
    cache.put("a", 1, revision=1)
    assert cache.get("a") is None  # nothing is kept before a revision is confirmed
    cache.confirm(1, time.monotonic())
    cache.put("a", 1, revision=1)
    cache.put("stale", 9, revision=0)  # read under an older revision: not kept
    assert cache.get("a") == 1 and cache.get("stale") is None
    cache.put("b", 2, revision=1)
    cache.put("c", 3, revision=1)
    assert len(cache) == 2 and cache.get("a") is None  # bounded, least recently used goes
    cache.confirm(2, time.monotonic())
    assert len(cache) == 0
    cache.put("b", 2, revision=2)
    cache.confirm(2, time.monotonic() - 5)  # an old confirmation does not extend trust
    assert cache.get("b") == 2
    untrusted: RevisionCache[str, int] = RevisionCache(entries_max=2, trust_ms=1_000)
    untrusted.confirm(1, time.monotonic() - 2)
    untrusted.put("a", 1, revision=1)
    assert untrusted.get("a") is None  # the poller is late: ask PostgreSQL


@pytest.mark.parametrize(
    ("item", "code"),
    [
        (7, "INVALID_FIELD"),
        ({"transaction": DEPOSIT}, "MISSING_IDEMPOTENCY_KEY"),
        ({"idempotency_key": "", "transaction": DEPOSIT}, "MISSING_IDEMPOTENCY_KEY"),
        ({"idempotency_key": 5, "transaction": DEPOSIT}, "INVALID_IDEMPOTENCY_KEY"),
        ({"idempotency_key": "k\x00", "transaction": DEPOSIT}, "INVALID_IDEMPOTENCY_KEY"),
        ({"idempotency_key": "k" * 256, "transaction": DEPOSIT}, "INVALID_IDEMPOTENCY_KEY"),
        ({"idempotency_key": "k"}, "MISSING_FIELD"),
        ({"idempotency_key": "k", "transaction": DEPOSIT, "x": 1}, "UNKNOWN_FIELD"),
        ({"idempotency_key": "k", "transaction": {**DEPOSIT, "x": 1}}, "UNKNOWN_FIELD"),
        ({"idempotency_key": "k", "transaction": {**DEPOSIT, "amount": 10}}, "INVALID_AMOUNT"),
        ({"idempotency_key": "k", "transaction": {**DEPOSIT, "amount": "1e1"}}, "INVALID_AMOUNT"),
        (
            {"idempotency_key": "k", "transaction": {**DEPOSIT, "description": "a\x00"}},
            "INVALID_TEXT",
        ),
        ({"idempotency_key": "k", "transaction": {"amount": "1.00"}}, "MISSING_FIELD"),
        ({"idempotency_key": "k", "transaction": []}, "INVALID_FIELD"),
    ],
)
def test_a_bad_batch_item_gets_the_single_endpoints_code(item: object, code: str) -> None:
    with pytest.raises(ApiError) as refused:
        decode_item(item)
    assert refused.value.code == code
    assert refused.value.status_code == 422


def test_a_good_batch_item_decodes() -> None:
    key, body = decode_item({"idempotency_key": "k-1", "transaction": DEPOSIT})
    assert key == "k-1" and str(body.destination_wallet_id) == WALLET

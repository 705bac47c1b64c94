"""ingest_api.ledger_view: which shards a transaction touched, and one answer from them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from domain.shards import ShardMap
from ingest_api.ledger_view import merge, payee_shard, shards_of_request

SHARDS = ShardMap(2)
T0 = datetime(2024, 6, 1, tzinfo=UTC)


def user_on(shard: int) -> uuid.UUID:
    user = uuid.uuid4()
    while SHARDS.shard_of_user(user) != shard:
        user = uuid.uuid4()
    return user


def request(source_shard: int | None, destination_shard: int | None) -> dict:
    """A stored request record (JSON: ids are strings)."""
    record: dict = {"source_wallet_id": None, "destination_wallet_id": None}
    if source_shard is not None:
        record.update(source_wallet_id=str(uuid.uuid4()), source_user_id=str(user_on(source_shard)))
    if destination_shard is not None:
        record.update(
            destination_wallet_id=str(uuid.uuid4()),
            destination_user_id=str(user_on(destination_shard)),
        )
    return record


def row(status: str, risk: str | None = "12.5") -> dict:
    return {"transaction_status": status, "risk_score": risk, "completed_at": T0}


def event(kind: str, seconds: int) -> dict:
    return {"event_type": kind, "created_at": T0 + timedelta(seconds=seconds)}


def test_shards_of_a_request_payer_first() -> None:
    assert shards_of_request(SHARDS, request(0, 1)) == [0, 1]
    assert shards_of_request(SHARDS, request(1, 0)) == [1, 0]
    assert shards_of_request(SHARDS, request(1, 1)) == [1]
    assert shards_of_request(SHARDS, request(None, 1)) == [1]  # a deposit
    assert shards_of_request(SHARDS, request(1, None)) == [1]  # a withdrawal
    assert shards_of_request(SHARDS, {"source_wallet_id": None}) == [0]


def test_reversal_reads_the_payees_shard() -> None:
    assert payee_shard(SHARDS, request(0, 1)) == 1
    assert payee_shard(SHARDS, request(1, None)) == 1
    assert payee_shard(SHARDS, request(None, 0)) == 0


def test_single_shard_answer_is_unchanged() -> None:
    only = (row("FAILED"), [event("INITIATED", 0), event("FAILED", 1)])
    assert merge([only]) == only
    assert merge([(None, [])]) == (None, [])


def test_cross_shard_in_flight_is_pending() -> None:
    merged, events = merge(
        [(row("COMPLETED"), [event("INITIATED", 0), event("SETTLED", 2)]), (None, [])]
    )
    assert merged is not None
    assert merged["transaction_status"] == "PENDING" and merged["completed_at"] is None
    assert [e["event_type"] for e in events] == ["INITIATED", "SETTLED"]


def test_cross_shard_completed_and_reversed() -> None:
    home = (row("COMPLETED", "40"), [event("INITIATED", 0), event("SETTLED", 1)])
    far = (row("COMPLETED", None), [event("INITIATED", 0), event("SETTLED", 3)])
    merged, events = merge([home, far])
    assert merged is not None
    assert merged["transaction_status"] == "COMPLETED" and merged["risk_score"] == "40"
    assert [e["created_at"].second for e in events] == [0, 0, 1, 3]
    far_reversed = (row("REVERSED"), [event("REVERSED", 5)])
    merged, _ = merge([home, far_reversed])
    assert merged is not None and merged["transaction_status"] == "REVERSED"


def test_failed_or_held_on_the_payers_shard_stays_so() -> None:
    for status in ("FAILED", "PENDING"):
        merged, _ = merge([(row(status), []), (None, [])])
        assert merged is not None and merged["transaction_status"] == status

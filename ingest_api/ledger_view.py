"""What the API reads of the ledger when it is sharded: which shard holds a wallet's balance
or a transaction's rows, and one answer from the shards a transaction touched.

A transaction between two shards has a row on each: the payer's shard writes it when it
debits the payer, the payee's shard when it credits the payee. Until the second exists the
money is in flight and the transaction is PENDING to the client. Pure, no I/O.
"""

from __future__ import annotations

import uuid
from typing import Any

from domain.shards import ShardMap


def _user(value: object) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


def shards_of_request(shards: ShardMap, record: dict[str, Any]) -> list[int]:
    """The payer's shard first (it records the transaction), then the payee's if other.
    ``record`` is the accepted request as stored (JSON)."""
    source = _user(record.get("source_user_id"))
    destination = _user(record.get("destination_user_id"))
    has_source = record.get("source_wallet_id") is not None
    payer = source if has_source else destination
    found = [shards.shard_of_user(u) for u in (payer, destination) if u is not None]
    return list(dict.fromkeys(found)) or [0]


def payee_shard(shards: ShardMap, record: dict[str, Any]) -> int:
    """Where a reversal of this transaction posts: the payee pays back, so its shard (or
    the payer's, when the money went outside)."""
    ordered = shards_of_request(shards, record)
    has_payee = record.get("destination_wallet_id") is not None
    return ordered[-1] if has_payee else ordered[0]


def merge(
    views: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]],
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """One (row, events) from each shard the transaction touched, payer's first."""
    home_row, home_events = views[0]
    if home_row is None or len(views) == 1:
        return home_row, home_events
    far_row, far_events = views[1]
    events = sorted([*home_events, *far_events], key=lambda e: (e["created_at"], e["event_type"]))
    if far_row is None:
        if home_row["transaction_status"] != "COMPLETED":
            return home_row, home_events  # still held, or failed: nothing crossed
        # The payer's shard has moved the money; the payee's has not credited it yet.
        return {**home_row, "transaction_status": "PENDING", "completed_at": None}, events
    statuses = {home_row["transaction_status"], far_row["transaction_status"]}
    row = dict(far_row)
    # A reversal posts on the payee's shard; its REVERSED status lives there.
    row["transaction_status"] = "REVERSED" if "REVERSED" in statuses else "COMPLETED"
    row["risk_score"] = home_row["risk_score"]
    return row, events

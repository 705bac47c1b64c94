"""Map a pipeline record to its ``pipeline_events`` row: pure, one function per concern."""

from __future__ import annotations

from typing import Any

from domain import records

_KIND = {
    "TransactionRequested": "requested",
    "TransactionRejected": "rejected",
    "PostTransaction": "approved",
    "TransactionPosted": "posted",
    "TransactionFailed": "failed",
    "DuplicateDiscarded": "duplicate_discarded",
    "ReviewRequested": "review",
}
_STATUS = {
    "requested": "PENDING",
    "approved": "PENDING",
    "rejected": "FAILED",
    "posted": "COMPLETED",
    "failed": "FAILED",
    "duplicate_discarded": "",
    "review": "PENDING",
}


def event_row(record: records.TransactionRecord | records.ReviewRequested) -> list[Any]:
    kind = _KIND[record.kind]
    when = (
        getattr(record, "completed_at", None)
        or getattr(record, "failed_at", None)
        or getattr(record, "discarded_at", None)
        or getattr(record, "decided_at", None)
        or record.requested_at
    )
    score = getattr(record, "risk_score", None)
    metadata = record.metadata
    # A two-phase posting moved what the gateway captured, not the amount asked for.
    moved = getattr(record, "moved_amount", record.amount)
    total = record.total_amount if moved == record.amount else moved + record.fee_amount
    return [
        record.event_id,
        kind,
        when,
        record.transaction_id,
        record.transaction_type.value,
        _STATUS[kind],
        record.source_wallet_id,
        record.destination_wallet_id,
        record.source_user_id,
        record.destination_user_id,
        moved,
        record.fee_amount,
        total,
        record.currency_code,
        getattr(record, "reason_code", "") or "",
        None if score is None else float(score),
        record.requested_at,
        str(metadata.get("channel") or ""),
        str(metadata.get("terminal_id") or ""),
        record.client_id,
    ]

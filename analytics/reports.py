"""Reports over ``pipeline_events``: parameterised SQL, ranges checked before querying."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from analytics.clickhouse import Warehouse


class ReportError(Exception):
    """A report request that cannot be answered as asked. ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def time_range(
    start: datetime | None, end: datetime | None, days_max: int
) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=1)
    if start.tzinfo is None or end.tzinfo is None:
        raise ReportError("INVALID_RANGE", "give times with a timezone, e.g. 2026-01-01T00:00Z")
    if start >= end:
        raise ReportError("INVALID_RANGE", "'from' must be before 'to'")
    if end - start > timedelta(days=days_max):
        raise ReportError("RANGE_TOO_LARGE", f"a report spans at most {days_max} days")
    return start, end


def volume(warehouse: Warehouse, start: datetime, end: datetime) -> list[dict[str, Any]]:
    rows = warehouse.query(
        """SELECT event_kind, transaction_type, currency_code, uniqExact(event_id) AS events,
                  toString(sum(amount)) AS amount
             FROM pipeline_events FINAL
            WHERE event_time >= {start:DateTime64(3)} AND event_time < {end:DateTime64(3)}
            GROUP BY event_kind, transaction_type, currency_code
            ORDER BY event_kind, transaction_type, currency_code""",
        {"start": start, "end": end},
    )
    return [
        {"event_kind": k, "transaction_type": t, "currency_code": c, "events": n, "amount": a}
        for k, t, c, n, a in rows
    ]


def latency(warehouse: Warehouse, start: datetime, end: datetime) -> dict[str, Any]:
    """Accept → complete: from the API's acceptance to the ledger's commit, in ms."""
    rows = warehouse.query(
        """SELECT count(), quantileExact(0.5)(ms), quantileExact(0.99)(ms), max(ms) FROM (
               SELECT dateDiff('millisecond', requested_at, event_time) AS ms
                 FROM pipeline_events FINAL
                WHERE event_kind = 'posted'
                  AND event_time >= {start:DateTime64(3)} AND event_time < {end:DateTime64(3)})""",
        {"start": start, "end": end},
    )
    count, p50, p99, worst = rows[0]
    return {
        "completed": count,
        "p50_ms": p50 if count else None,
        "p99_ms": p99 if count else None,
        "max_ms": worst if count else None,
    }


def transaction_events(warehouse: Warehouse, transaction_id: str) -> list[dict[str, Any]]:
    rows = warehouse.query(
        """SELECT event_kind, transaction_status, reason_code, toString(amount), event_time
             FROM pipeline_events FINAL WHERE transaction_id = {id:UUID}
            ORDER BY event_time""",
        {"id": transaction_id},
    )
    return [
        {"event_kind": k, "transaction_status": s, "reason_code": r, "amount": a, "event_time": t}
        for k, s, r, a, t in rows
    ]

"""History for policy backtests: every request in a range with the stream's first decision
on it, and the fraud labels stored beside them, if any.

ClickHouse keeps no features; ``streams.replay`` recomputes them from these rows. Rows are
plain values (JSON-friendly through ``as_json``) so the API and a direct read of the engine
hand the backtest the same thing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from analytics.exceptions import TooMuchData
from analytics.schema import Executor

#: The stream decides within a moment of a request; look for decisions this far past the
#: range's end (a request near the end still finds its decision).
DECISION_LAG = timedelta(hours=1)
HISTORY_COLUMNS = (
    "transaction_id",
    "requested_at",
    "transaction_type",
    "source_wallet_id",
    "destination_wallet_id",
    "amount",
    "currency_code",
    "channel",
    "decision",
    "risk_score",
    "terminal_id",
)
#: Where labels may be stored (the ``fraud.labels`` sink): a table, or a column of the events.
LABEL_TABLE = "fraud_labels"
LABEL_COLUMNS = ("is_fraud", "label")
LABEL_TIME_COLUMNS = ("labelled_at", "labeled_at", "event_time", "inserted_at")

HISTORY_SQL = """
SELECT r.transaction_id, r.requested_at, r.transaction_type, r.source_wallet_id,
       r.destination_wallet_id, r.amount, r.currency_code, r.channel, d.decision, d.risk_score,
       r.terminal_id
  FROM (SELECT transaction_id, min(event_time) AS requested_at,
               any(transaction_type) AS transaction_type,
               any(source_wallet_id) AS source_wallet_id,
               any(destination_wallet_id) AS destination_wallet_id,
               any(amount) AS amount, any(currency_code) AS currency_code,
               any(channel) AS channel, any(terminal_id) AS terminal_id
          FROM pipeline_events
         WHERE event_kind = 'requested'
           AND event_time >= {start:DateTime64(3)} AND event_time < {end:DateTime64(3)}
         GROUP BY transaction_id) AS r
  LEFT JOIN
       (SELECT transaction_id, argMin(decision, event_time) AS decision,
               argMin(risk_score, event_time) AS risk_score
          FROM pipeline_events
         WHERE event_kind IN ('approved', 'rejected', 'review')
           AND event_time >= {start:DateTime64(3)} AND event_time < {decided_end:DateTime64(3)}
         GROUP BY transaction_id) AS d
    ON r.transaction_id = d.transaction_id
 ORDER BY r.requested_at, r.transaction_id
 LIMIT {limit:UInt64}"""


def decision_history(db: Executor, start: datetime, end: datetime, rows_max: int) -> list[tuple]:
    """Requests in [start, end) in time order, each with its first decision (``decision``
    '' and ``risk_score`` None when none is stored). Raises TooMuchData past ``rows_max``."""
    rows = db.query(
        HISTORY_SQL,
        {"start": start, "end": end, "decided_end": end + DECISION_LAG, "limit": rows_max + 1},
    )
    if len(rows) > rows_max:
        raise TooMuchData(
            f"more than {rows_max:,} requests from {start.isoformat()} to {end.isoformat()}: "
            "backtest a shorter range (or a shorter warm-up)"
        )
    return rows


def stored_labels(db: Executor, start: datetime, end: datetime) -> dict[uuid.UUID, bool] | None:
    """Fraud labels of the requests in [start, end), from a ``fraud_labels`` table or an
    ``is_fraud``/``label`` column of ``pipeline_events``; None when neither exists. The
    latest label of a transaction wins when a time column says which is latest, else any
    fraud label does."""
    if db.query(f"EXISTS TABLE {LABEL_TABLE}")[0][0]:
        columns = {row[0] for row in db.query(f"DESCRIBE TABLE {LABEL_TABLE}")}
        source = LABEL_TABLE
    else:
        columns = {row[0] for row in db.query("DESCRIBE TABLE pipeline_events")}
        source = "pipeline_events"
    label = next((c for c in LABEL_COLUMNS if c in columns), None)
    if label is None or "transaction_id" not in columns:
        return None
    when = next((c for c in LABEL_TIME_COLUMNS if c in columns), None)
    # Only names from the allow-lists above reach the SQL text.
    value = f"argMax({label}, {when})" if when else f"max({label})"
    rows = db.query(
        f"""SELECT transaction_id, toUInt8({value}) FROM {source}
             WHERE {label} IS NOT NULL AND transaction_id IN (
                   SELECT transaction_id FROM pipeline_events
                    WHERE event_kind = 'requested' AND event_time >= {{start:DateTime64(3)}}
                      AND event_time < {{end:DateTime64(3)}})
             GROUP BY transaction_id""",
        {"start": start, "end": end},
    )
    return {row[0]: bool(row[1]) for row in rows}


def as_json(row: tuple) -> list[Any]:
    """A history row for the API: ids and times as text, amounts as decimal strings."""
    return [None if value is None else _json_value(value) for value in row]


def _json_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def risk_score(value: float | str | None) -> Decimal | None:
    """A stored score (Float32: 87.53 reads 87.5299…) back to its two decimals."""
    if value is None:
        return None
    return Decimal(repr(round(float(value), 2))).quantize(Decimal("0.01"))

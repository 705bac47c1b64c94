"""The ClickHouse side: one client (embedded chDB or a server), guarded access.

Only one process may open a chDB path, and the embedded session is not safe to share
between threads without a lock, so every query goes through ``Warehouse``. The tables are
declared in ``analytics.schema``.

Events go in as one Arrow table per batch (``insert_arrow``: the same call for chDB and a
server): pyarrow converts each column in C, where clickhouse-connect's own insert serialized
UUIDs, decimals and datetimes value by value in Python. Amounts are Arrow decimal128(19, 4),
exact both ways (a value with more than 4 decimals raises instead of rounding).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import clickhouse_connect
import pyarrow as pa

from analytics import schema

#: UUIDs travel to the embedded engine as their 16 bytes (big-endian, ``UUID.bytes``), which
#: it reads into a UUID column (pyarrow's own uuid type converts in Python, 3x slower). The
#: Arrow input of older servers does not take that, so a server gets the UUIDs' text.
_UUID, _TIME, _AMOUNT = pa.binary(16), pa.timestamp("ms", tz="UTC"), pa.decimal128(19, 4)
_TEXT, _SCORE = pa.string(), pa.float32()
#: The columns the sink writes, in row order, with the Arrow type each is sent as.
#: DateTime64(3) keeps milliseconds: pyarrow truncates the microseconds as the table would.
#: Strings go into the LowCardinality columns as they are.
EVENT_SCHEMA = pa.schema(
    [
        ("event_id", _UUID),
        ("event_kind", _TEXT),
        ("event_time", _TIME),
        ("transaction_id", _UUID),
        ("transaction_type", _TEXT),
        ("transaction_status", _TEXT),
        ("source_wallet_id", _UUID),
        ("destination_wallet_id", _UUID),
        ("source_user_id", _UUID),
        ("destination_user_id", _UUID),
        ("amount", _AMOUNT),
        ("fee_amount", _AMOUNT),
        ("total_amount", _AMOUNT),
        ("currency_code", _TEXT),
        ("reason_code", _TEXT),
        ("risk_score", _SCORE),
        ("requested_at", _TIME),
        ("channel", _TEXT),
        ("terminal_id", _TEXT),
        ("client_id", _UUID),
    ]
)
EVENT_COLUMNS = tuple(EVENT_SCHEMA.names)
EVENT_SCHEMA_UUID_TEXT = pa.schema(
    [(f.name, pa.string() if f.type == _UUID else f.type) for f in EVENT_SCHEMA]
)
EVENT_ID, EVENT_KIND, EVENT_TIME = 0, 1, 2
#: Rows of one insert are unique by event id (the sink drops repeats first) and the views
#: group by their tables' keys, so merging each new part on insert finds nothing to merge:
#: skip that pass (about a fifth of a small insert's time with eight views).
INSERT_SETTINGS = {"optimize_on_insert": 0}
REPORT_COLUMNS = (
    "report_id",
    "report_type",
    "category",
    "occurred_at",
    "subject_user_id",
    "subject_wallet_id",
    "currency_code",
    "total_amount",
    "transaction_count",
    "record",
)
#: Ids per existence query: bounds the SQL text (about 40 bytes an id).
IDS_PER_QUERY_MAX = 20_000
#: Stored ids per batch id the lookup reads back before it searches by id instead.
WINDOW_IDS_PER_ID_MAX = 4
_WINDOW = """FROM pipeline_events
    WHERE event_kind IN {kinds:Array(String)}
      AND event_time >= {start:DateTime64(3)} AND event_time <= {end:DateTime64(3)}"""


def connect(target: str) -> Any:
    """``chdb:///abs/path`` opens the embedded engine; ``http://host:8123`` a server."""
    return clickhouse_connect.get_client(dsn=target)


class Warehouse:
    def __init__(self, target: str) -> None:
        self._client = connect(target)
        self._uuids_as_text = not target.startswith("chdb:")
        self._lock = threading.Lock()
        self.rebuilt_roll_ups = schema.apply(self)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._client.command(sql, parameters=parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        with self._lock:
            return list(self._client.query(sql, parameters=parameters or {}).result_rows)

    def insert_events(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows in ``EVENT_COLUMNS`` order, in one insert (one part per table and month)."""
        if not rows:
            return
        table = events_table(rows, uuids_as_text=self._uuids_as_text)
        with self._lock:
            self._client.insert_arrow("pipeline_events", table, settings=INSERT_SETTINGS)

    def stored_event_ids(
        self, kinds: Sequence[str], ids: Sequence[uuid.UUID], start: datetime, end: datetime
    ) -> set[uuid.UUID]:
        """Which of ``ids`` (events of ``kinds`` between ``start`` and ``end``, inclusive)
        are stored already. The time bounds let the primary key skip most of the table.

        A live batch's window holds few stored events besides a replay of the batch itself,
        so the window's ids are read and matched here: sending ten thousand ids as a query
        parameter cost more (formatting them, and the engine parsing them) than the search.
        A window holding more than ``WINDOW_IDS_PER_ID_MAX`` times the batch (a backfill
        whose partitions are far apart in time) is searched for the ids instead."""
        if not ids:
            return set()
        window = {"kinds": list(kinds), "start": start, "end": end}
        window_max = len(ids) * WINDOW_IDS_PER_ID_MAX
        stored = self.query(f"SELECT event_id {_WINDOW} LIMIT {window_max + 1}", window)
        if len(stored) <= window_max:
            wanted = set(ids)
            return {row[0] for row in stored if row[0] in wanted}
        found: set[uuid.UUID] = set()
        for first in range(0, len(ids), IDS_PER_QUERY_MAX):
            chunk = list(ids[first : first + IDS_PER_QUERY_MAX])
            rows = self.query(
                f"SELECT event_id {_WINDOW} AND event_id IN {{ids:Array(UUID)}}",
                {**window, "ids": chunk},
            )
            found.update(row[0] for row in rows)
        return found

    def insert_reports(self, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self._lock:
            self._client.insert("regulatory_reports", list(rows), column_names=REPORT_COLUMNS)

    def stored_report_ids(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        rows = self.query(
            "SELECT report_id FROM regulatory_reports WHERE report_id IN {ids:Array(UUID)}",
            {"ids": list(ids)},
        )
        return {row[0] for row in rows}

    def close(self) -> None:
        with self._lock:
            self._client.close()


def events_table(rows: Sequence[Sequence[Any]], uuids_as_text: bool = False) -> pa.Table:
    """The rows as one Arrow table, column by column."""
    schema = EVENT_SCHEMA_UUID_TEXT if uuids_as_text else EVENT_SCHEMA
    arrays = []
    for column, field, wire in zip(zip(*rows, strict=True), EVENT_SCHEMA, schema, strict=True):
        values: Sequence[Any] = column
        if field.type == _UUID and uuids_as_text:
            values = [None if value is None else str(value) for value in column]
        elif field.type == _UUID:
            values = [None if value is None else value.bytes for value in column]
        arrays.append(pa.array(values, type=wire.type))
    return pa.Table.from_arrays(arrays, schema=schema)

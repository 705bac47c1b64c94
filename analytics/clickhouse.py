"""The ClickHouse side: one client (embedded chDB or a server), the DDL, guarded access.

Only one process may open a chDB path, and the embedded session is not safe to share
between threads without a lock, so every query goes through ``Warehouse``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import clickhouse_connect

EVENT_COLUMNS = (
    "event_id",
    "event_kind",
    "event_time",
    "transaction_id",
    "transaction_type",
    "transaction_status",
    "source_wallet_id",
    "destination_wallet_id",
    "source_user_id",
    "destination_user_id",
    "amount",
    "fee_amount",
    "total_amount",
    "currency_code",
    "reason_code",
    "risk_score",
    "requested_at",
    "channel",
    "terminal_id",
    "client_id",
)

DDL = (
    """CREATE TABLE IF NOT EXISTS pipeline_events (
        event_id UUID,
        event_kind LowCardinality(String),
        event_time DateTime64(3, 'UTC'),
        transaction_id UUID,
        transaction_type LowCardinality(String),
        transaction_status LowCardinality(String),
        source_wallet_id Nullable(UUID),
        destination_wallet_id Nullable(UUID),
        source_user_id Nullable(UUID),
        destination_user_id Nullable(UUID),
        amount Decimal(19, 4),
        fee_amount Decimal(19, 4),
        total_amount Decimal(19, 4),
        currency_code LowCardinality(String),
        reason_code LowCardinality(String),
        risk_score Nullable(Float32),
        requested_at DateTime64(3, 'UTC'),
        channel LowCardinality(String),
        terminal_id String,
        client_id UUID,
        inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree(inserted_at)
    PARTITION BY toYYYYMM(event_time)
    ORDER BY (event_kind, event_time, event_id)""",
)


def connect(target: str) -> Any:
    """``chdb:///abs/path`` opens the embedded engine; ``http://host:8123`` a server."""
    if target.startswith("chdb://"):
        return clickhouse_connect.get_client(dsn=target)
    return clickhouse_connect.get_client(dsn=target)


class Warehouse:
    def __init__(self, target: str) -> None:
        self._client = connect(target)
        self._lock = threading.Lock()
        for statement in DDL:
            self.command(statement)

    def command(self, sql: str) -> None:
        with self._lock:
            self._client.command(sql)

    def insert_events(self, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            self._client.insert("pipeline_events", rows, column_names=EVENT_COLUMNS)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        with self._lock:
            return list(self._client.query(sql, parameters=parameters or {}).result_rows)

    def close(self) -> None:
        with self._lock:
            self._client.close()

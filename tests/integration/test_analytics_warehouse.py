"""analytics.clickhouse on the embedded engine (a tmp path, no stack): the Arrow insert lands
exactly what clickhouse-connect's row insert landed, the dedup lookup finds the same ids
whether it reads the batch's window or searches by id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from analytics import clickhouse
from analytics.clickhouse import EVENT_COLUMNS, Warehouse, events_batch
from analytics.sink import store_new_events

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    path: Path = tmp_path_factory.mktemp("chdb") / "engine"
    wh = Warehouse(f"chdb://{path}")
    yield wh
    wh.close()  # one chDB path per process: later tests may open another


def event(n: int, at: datetime = T0, **overrides: Any) -> dict[str, Any]:
    """One event's values as Python objects (what clickhouse-connect's row insert takes)."""
    values: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "event_kind": "posted",
        "event_time": at + timedelta(microseconds=n),
        "transaction_id": uuid.uuid4(),
        "transaction_type": "TRANSFER",
        "transaction_status": "COMPLETED",
        "source_wallet_id": uuid.uuid4(),
        "destination_wallet_id": None,
        "source_user_id": uuid.uuid4(),
        "destination_user_id": None,
        "amount": Decimal("12.3456"),
        "fee_amount": Decimal("0.0001"),
        "total_amount": Decimal("12.3457"),
        "currency_code": "USD",
        "reason_code": "",
        "risk_score": 87.53,
        "requested_at": at - timedelta(milliseconds=250, microseconds=999),
        "channel": "pos",
        "terminal_id": f"T{n}",
        "client_id": uuid.uuid4(),
        "scored_by": "",
        "shadow_scores": {},
    }
    values.update(overrides)
    return values


def as_row(values: dict[str, Any]) -> tuple[Any, ...]:
    """The same event as the sink's mapping gives it: ids, times and amounts as text."""
    text = {
        name: value
        if value is None or isinstance(value, str | float | int)
        else value.isoformat()
        if isinstance(value, datetime)
        else format(value, "f")
        if isinstance(value, Decimal)
        else str(value)
        for name, value in values.items()
        if name != "shadow_scores"
    }
    text["shadow_scores"] = list(values["shadow_scores"].items())
    return tuple(text[name] for name in EVENT_COLUMNS)


def test_the_arrow_insert_lands_what_the_row_insert_landed(warehouse: Warehouse) -> None:
    events = [
        event(0, scored_by="fraud-gbm v3", shadow_scores={"fraud-gbm v4": 12.5, "rules v1": 99.0}),
        event(1, amount=Decimal("999999999999999.9999"), total_amount=Decimal("0.0000")),
        event(2, risk_score=None, source_wallet_id=None, destination_wallet_id=uuid.uuid4()),
        event(3, at=datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC), reason_code="X"),
        event(4, amount=Decimal("0.0001"), channel="", terminal_id="ünïcode"),
        event(5, at=datetime(2026, 3, 10, 14, 0, 0, 1000, tzinfo=timezone(timedelta(hours=2)))),
    ]
    batch = events_batch([as_row(e) for e in events])
    assert batch.rejected == {}
    warehouse.command("CREATE TABLE IF NOT EXISTS row_insert AS pipeline_events")  # no views
    warehouse.insert_events(batch.table)
    warehouse._client.insert(  # the path the sink took before Arrow
        "row_insert",
        [[e[name] for e in events] for name in EVENT_COLUMNS],
        column_names=EVENT_COLUMNS,
        column_oriented=True,
    )
    ids = [e["event_id"] for e in events]
    select = f"SELECT {', '.join(EVENT_COLUMNS)} FROM {{table:Identifier}}"
    where = " WHERE event_id IN {ids:Array(UUID)} ORDER BY terminal_id"
    arrow = warehouse.query(select + where, {"table": "pipeline_events", "ids": ids})
    before = warehouse.query(select + where, {"table": "row_insert", "ids": ids})
    assert arrow == before and len(arrow) == len(events)
    by_terminal = {row[EVENT_COLUMNS.index("terminal_id")]: row for row in arrow}
    assert by_terminal["T1"][EVENT_COLUMNS.index("amount")] == Decimal("999999999999999.9999")
    assert by_terminal["T0"][EVENT_COLUMNS.index("scored_by")] == "fraud-gbm v3"
    assert by_terminal["T0"][EVENT_COLUMNS.index("shadow_scores")] == {
        "fraud-gbm v4": 12.5,
        "rules v1": 99.0,
    }


def test_an_amount_past_four_decimals_is_refused_not_rounded(warehouse: Warehouse) -> None:
    values = event(0, amount=Decimal("1.00001"))
    batch = events_batch([as_row(values)])
    assert batch.rejected == {0: "amount: '1.00001': Rescaling Decimal value would cause data loss"}
    assert store_new_events(warehouse, batch.table) == 0
    stored = warehouse.stored_event_ids(
        ["posted"], [str(values["event_id"])], T0, T0 + timedelta(seconds=1)
    )
    assert stored == set()


def test_the_lookup_finds_the_same_ids_by_window_and_by_id(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = T0 + timedelta(days=3)
    stored = [as_row(event(n, at)) for n in range(50)]
    assert store_new_events(warehouse, events_batch(stored).table) == 50
    batch = stored[10:20] + [as_row(event(100 + n, at)) for n in range(10)]
    ids = [row[0] for row in batch]
    window = (["posted", "requested"], ids, at, at + timedelta(milliseconds=2))
    expected = {row[0] for row in stored[10:20]}
    assert warehouse.stored_event_ids(*window) == expected  # 50 stored <= 4 x 20: read them
    monkeypatch.setattr(clickhouse, "WINDOW_IDS_PER_ID_MAX", 1)
    assert warehouse.stored_event_ids(*window) == expected  # 50 > 1 x 20: search by id
    monkeypatch.setattr(clickhouse, "IDS_PER_QUERY_MAX", 3)
    assert warehouse.stored_event_ids(*window) == expected  # in chunks
    assert store_new_events(warehouse, events_batch(batch).table) == 10

"""analytics.sink: a batch goes in without repeats and without ids already stored."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from analytics.clickhouse import EVENT_COLUMNS
from analytics.mapping import event_row
from analytics.sink import decode, first_of_each_event, store_new_events
from domain import records

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def row(n: int, kind: str = "posted", at: datetime = T0) -> list[Any]:
    values: list[Any] = [None] * len(EVENT_COLUMNS)
    values[EVENT_COLUMNS.index("event_id")] = uuid.UUID(int=n)
    values[EVENT_COLUMNS.index("event_kind")] = kind
    values[EVENT_COLUMNS.index("event_time")] = at
    return values


class FakeWarehouse:
    """Holds event ids like pipeline_events would; records what it was asked."""

    def __init__(self, stored: set[uuid.UUID]) -> None:
        self.stored = set(stored)
        self.inserted: list[Sequence[Any]] = []
        self.lookups: list[tuple[list[str], datetime, datetime]] = []

    def stored_event_ids(
        self, kinds: Sequence[str], ids: Sequence[uuid.UUID], start: datetime, end: datetime
    ) -> set[uuid.UUID]:
        self.lookups.append((list(kinds), start, end))
        return {i for i in ids if i in self.stored}

    def insert_events(self, rows: Sequence[Sequence[Any]]) -> None:
        self.inserted.extend(rows)
        self.stored.update(r[0] for r in rows)


def test_repeats_within_a_batch_keep_the_first() -> None:
    first, repeat = row(1, "posted"), row(1, "posted")
    repeat[EVENT_COLUMNS.index("terminal_id")] = "later copy"
    assert first_of_each_event([first, row(2), repeat, row(3)]) == [first, row(2), row(3)]


def test_stored_ids_are_not_inserted_again() -> None:
    warehouse = FakeWarehouse(stored={uuid.UUID(int=1)})
    written = store_new_events(warehouse, [row(1), row(2), row(2), row(3)])  # type: ignore[arg-type]
    assert written == 2
    assert [r[0].int for r in warehouse.inserted] == [2, 3]


def test_a_replayed_batch_inserts_nothing() -> None:
    warehouse = FakeWarehouse(stored=set())
    batch = [row(n, kind, T0 + timedelta(seconds=n)) for n, kind in enumerate(["a", "b", "c"])]
    assert store_new_events(warehouse, batch) == 3  # type: ignore[arg-type]
    assert store_new_events(warehouse, batch) == 0  # type: ignore[arg-type]
    assert len(warehouse.inserted) == 3


def test_the_lookup_is_narrowed_to_the_batch_kinds_and_times() -> None:
    warehouse = FakeWarehouse(stored=set())
    batch = [row(1, "posted", T0), row(2, "requested", T0 + timedelta(minutes=5))]
    store_new_events(warehouse, batch)  # type: ignore[arg-type]
    [(kinds, start, end)] = warehouse.lookups
    assert kinds == ["posted", "requested"]
    assert start <= T0 < T0 + timedelta(minutes=5) <= end
    assert end - start < timedelta(minutes=5, seconds=1)


def test_an_empty_batch_asks_nothing() -> None:
    warehouse = FakeWarehouse(stored=set())
    assert store_new_events(warehouse, []) == 0  # type: ignore[arg-type]
    assert warehouse.lookups == []


def test_review_requests_decode_from_their_own_topic_and_land_as_review() -> None:
    review = records.ReviewRequested(
        transaction_id=uuid.uuid4(),
        transaction_type="TRANSFER",
        source_wallet_id=uuid.uuid4(),
        destination_wallet_id=uuid.uuid4(),
        amount=Decimal("50"),
        fee_amount=Decimal("0"),
        total_amount=Decimal("50"),
        currency_code="EUR",
        client_id=uuid.uuid4(),
        idempotency_key="k",
        requested_at=T0,
        risk_score=Decimal("72.50"),
        decided_at=T0 + timedelta(seconds=1),
        review_deadline=T0 + timedelta(minutes=5),
    )
    row = event_row(decode("reviews.requested", records.encode(review)))
    column = dict(zip(EVENT_COLUMNS, row, strict=True))
    assert (column["event_kind"], column["transaction_status"]) == ("review", "PENDING")
    assert column["risk_score"] == 72.5 and column["event_time"] == T0 + timedelta(seconds=1)


def test_a_two_phase_posting_counts_what_was_captured() -> None:
    posted = records.TransactionPosted(
        transaction_id=uuid.uuid4(),
        transaction_type="PAYMENT",
        source_wallet_id=uuid.uuid4(),
        amount=Decimal("100"),
        fee_amount=Decimal("1"),
        total_amount=Decimal("101"),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key="k",
        requested_at=T0,
        completed_at=T0,
        captured_amount=Decimal("60"),
    )
    column = dict(zip(EVENT_COLUMNS, event_row(posted), strict=True))
    assert (column["amount"], column["total_amount"]) == (Decimal("60"), Decimal("61"))


def test_a_commit_with_nothing_to_commit_after_a_rebalance_does_not_stop_the_sink() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from analytics.settings import AnalyticsSettings
    from analytics.sink import EventSink

    class RebalancedConsumer:
        def commit(self, asynchronous: bool = True) -> None:
            raise KafkaException(KafkaError(KafkaError._NO_OFFSET))

    class Producer:
        def flush(self, timeout: float) -> int:
            return 0

    warehouse = FakeWarehouse(set())
    settings = AnalyticsSettings(
        KAFKA_BOOTSTRAP="127.0.0.1:1",
        CLICKHOUSE_DSN="chdb:///nowhere",
        DATABASE_URL="postgresql://x/y",
    )
    sink = EventSink(settings, warehouse)  # type: ignore[arg-type]
    sink._flush([row(1), row(2)], RebalancedConsumer(), Producer())  # type: ignore[arg-type]
    assert sink.rows_written == 2 and len(warehouse.inserted) == 2

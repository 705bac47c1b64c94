"""analytics.sink: a batch goes in without repeats and without ids already stored."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa

from analytics.clickhouse import (
    EVENT_COLUMNS,
    RECORDS_PER_CHUNK,
    EventsBatchBuilder,
    events_batch,
)
from analytics.mapping import row_from_json
from analytics.sink import first_of_each_event, store_new_events
from domain import records

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def row(n: int, kind: str = "posted", at: datetime = T0, terminal: str = "") -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=n)),
        "event_kind": kind,
        "event_time": at.isoformat(),
        "transaction_id": str(uuid.UUID(int=1000 + n)),
        "transaction_type": "PAYMENT",
        "transaction_status": "COMPLETED",
        "source_wallet_id": None,
        "destination_wallet_id": None,
        "source_user_id": None,
        "destination_user_id": None,
        "amount": "1.0000",
        "fee_amount": "0.0000",
        "total_amount": "1.0000",
        "currency_code": "USD",
        "reason_code": "",
        "risk_score": None,
        "requested_at": at.isoformat(),
        "channel": "",
        "terminal_id": terminal,
        "client_id": str(uuid.UUID(int=7)),
        "scored_by": "",
        "shadow_scores": [],
    }
    return tuple(values[name] for name in EVENT_COLUMNS)


def table(*rows: tuple[Any, ...]) -> pa.Table:
    batch = events_batch(rows)
    assert batch.rejected == {}
    return batch.table


class FakeWarehouse:
    """Holds event ids like pipeline_events would; records what it was asked."""

    def __init__(self, stored: set[str]) -> None:
        self.stored = set(stored)
        self.inserted: list[dict[str, Any]] = []
        self.lookups: list[tuple[list[str], datetime, datetime]] = []

    def stored_event_ids(
        self, kinds: Sequence[str], ids: Sequence[str], start: datetime, end: datetime
    ) -> set[str]:
        self.lookups.append((list(kinds), start, end))
        listed = ids.to_pylist() if hasattr(ids, "to_pylist") else list(ids)
        return {i for i in listed if i in self.stored}

    def insert_events(self, new: pa.Table) -> None:
        self.inserted.extend(new.to_pylist())
        self.stored.update(new.column("event_id").to_pylist())


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [uuid.UUID(r["event_id"]).int for r in rows]


def test_repeats_within_a_batch_keep_the_first() -> None:
    assert first_of_each_event(["a", "b", "a", "c"]) == [True, True, False, True]
    assert first_of_each_event(["a", "b"]) == [True, True]
    warehouse = FakeWarehouse(stored=set())
    first, repeat = row(1, terminal="first"), row(1, terminal="later copy")
    assert store_new_events(warehouse, table(first, row(2), repeat, row(3))) == 3  # type: ignore[arg-type]
    assert ids(warehouse.inserted) == [1, 2, 3]
    assert warehouse.inserted[0]["terminal_id"] == "first"


def test_stored_ids_are_not_inserted_again() -> None:
    warehouse = FakeWarehouse(stored={str(uuid.UUID(int=1))})
    written = store_new_events(warehouse, table(row(1), row(2), row(2), row(3)))  # type: ignore[arg-type]
    assert written == 2
    assert ids(warehouse.inserted) == [2, 3]


def test_a_replayed_batch_inserts_nothing() -> None:
    warehouse = FakeWarehouse(stored=set())
    batch = table(*(row(n, kind, T0 + timedelta(seconds=n)) for n, kind in enumerate("abc")))
    assert store_new_events(warehouse, batch) == 3  # type: ignore[arg-type]
    assert store_new_events(warehouse, batch) == 0  # type: ignore[arg-type]
    assert len(warehouse.inserted) == 3


def test_the_lookup_is_narrowed_to_the_batch_kinds_and_times() -> None:
    warehouse = FakeWarehouse(stored=set())
    batch = table(row(1, "posted", T0), row(2, "requested", T0 + timedelta(minutes=5)))
    store_new_events(warehouse, batch)  # type: ignore[arg-type]
    [(kinds, start, end)] = warehouse.lookups
    assert kinds == ["posted", "requested"]
    assert start <= T0 < T0 + timedelta(minutes=5) <= end
    assert end - start < timedelta(minutes=5, seconds=1)


def test_an_empty_batch_asks_nothing() -> None:
    warehouse = FakeWarehouse(stored=set())
    assert store_new_events(warehouse, table()) == 0  # type: ignore[arg-type]
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
    [column] = table(row_from_json("reviews.requested", records.encode(review))).to_pylist()
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
    [column] = table(row_from_json("ledger.events", records.encode(posted))).to_pylist()
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
    batch = EventsBatchBuilder()
    batch.add(row(1))
    batch.add(row(2))
    sink._flush(batch, [], RebalancedConsumer(), Producer())  # type: ignore[arg-type]
    assert sink.rows_written == 2 and len(warehouse.inserted) == 2


class Message:
    """A consumed record as confluent_kafka hands it over."""

    def __init__(self, offset: int, value: bytes | None, topic: str = "ledger.events") -> None:
        self._offset, self._value, self._topic = offset, value, topic

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return self._value


class RecordingProducer:
    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None, dict[str, bytes]]] = []

    def produce(self, topic: str, key: bytes, value: bytes | None, headers: list) -> None:
        self.produced.append((topic, value, dict(headers)))

    def flush(self, timeout: float) -> int:
        return 0


class CommittingConsumer:
    def __init__(self) -> None:
        self.commits = 0

    def commit(self, asynchronous: bool = True) -> None:
        self.commits += 1


def test_records_that_cannot_be_mapped_go_to_the_dead_letter_topic_and_the_rest_is_stored() -> None:
    from analytics.settings import AnalyticsSettings
    from analytics.sink import EventSink

    messages = [
        Message(10, deposit()),
        Message(11, b"{broken"),  # refused by the decoder
        Message(12, deposit(amount="5.00001")),  # refused by its column, at the flush
        Message(13, deposit()),
    ]
    settings = AnalyticsSettings(
        KAFKA_BOOTSTRAP="127.0.0.1:1", CLICKHOUSE_DSN="chdb:///nowhere", DATABASE_URL="x://y"
    )
    warehouse, producer, consumer = FakeWarehouse(set()), RecordingProducer(), CommittingConsumer()
    sink = EventSink(settings, warehouse)  # type: ignore[arg-type]
    rows = EventsBatchBuilder()
    taken: list[Any] = []
    for message in messages:
        sink._take(message, rows, taken)  # type: ignore[arg-type]
    sink._flush(rows, taken, consumer, producer)  # type: ignore[arg-type]
    assert sink.rows_written == 2 and sink.dead_letters == 2 and consumer.commits == 1
    assert [topic for topic, _, _ in producer.produced] == ["ledger.events.dlq"] * 2
    (_, value_11, headers_11), (_, value_12, headers_12) = producer.produced
    assert value_11 == b"{broken" and headers_11["dlq.offset"] == b"11"
    assert headers_11["dlq.reason"].startswith(b"record: invalid JSON")
    assert value_12 == messages[2].value() and headers_12["dlq.offset"] == b"12"
    assert headers_12["dlq.reason"].startswith(b"cannot map to pipeline_events: amount: '5.00001'")


def deposit(**changes: Any) -> bytes:
    """A posted deposit's JSON, fields replaced by ``changes``."""
    record = records.TransactionPosted(
        transaction_id=uuid.uuid4(),
        transaction_type="DEPOSIT",
        destination_wallet_id=uuid.uuid4(),
        amount=Decimal("5"),
        fee_amount=Decimal("0"),
        total_amount=Decimal("5"),
        currency_code="EUR",
        client_id=uuid.uuid4(),
        idempotency_key="k",
        requested_at=T0,
        completed_at=T0,
    )
    return orjson.dumps({**orjson.loads(records.encode(record)), **changes})


def test_bad_records_among_good_ones_in_several_chunks_go_alone_to_dead_letters() -> None:
    # Records are decoded a chunk at a time: a bad record anywhere (the last of a chunk, the
    # first of the next) leaves out itself alone, with its reason.
    from analytics.settings import AnalyticsSettings
    from analytics.sink import EventSink

    bad = {
        3: b"{broken",  # refused by the decoder
        RECORDS_PER_CHUNK - 1: deposit(amount=12.5),  # a number for text: Arrow refuses it
        RECORDS_PER_CHUNK: deposit(amount="5.00001"),  # refused by its column
        2 * RECORDS_PER_CHUNK + 7: deposit(currency_code="EURO"),
    }
    messages = [Message(n, bad.get(n) or deposit()) for n in range(2 * RECORDS_PER_CHUNK + 20)]
    settings = AnalyticsSettings(
        KAFKA_BOOTSTRAP="127.0.0.1:1", CLICKHOUSE_DSN="chdb:///nowhere", DATABASE_URL="x://y"
    )
    warehouse, producer, consumer = FakeWarehouse(set()), RecordingProducer(), CommittingConsumer()
    sink = EventSink(settings, warehouse)  # type: ignore[arg-type]
    rows, taken = EventsBatchBuilder(), []
    for message in messages:
        sink._take(message, rows, taken)  # type: ignore[arg-type]
    sink._flush(rows, taken, consumer, producer)  # type: ignore[arg-type]

    good = [m for m in messages if m.offset() not in bad]
    assert sink.rows_written == len(good) == len(messages) - 4 and sink.dead_letters == 4
    assert [r["event_id"] for r in warehouse.inserted] == [
        orjson.loads(m.value() or b"")["event_id"] for m in good
    ]
    reasons = {int(h["dlq.offset"]): h["dlq.reason"].decode() for _, _, h in producer.produced}
    assert list(reasons) == sorted(bad)
    assert reasons[3].startswith("record: invalid JSON")
    assert reasons[RECORDS_PER_CHUNK - 1].startswith(
        "cannot map to pipeline_events: amount: 12.5: "
    )
    assert reasons[RECORDS_PER_CHUNK].startswith("cannot map to pipeline_events: amount: '5.00001'")
    assert reasons[2 * RECORDS_PER_CHUNK + 7] == (
        "cannot map to pipeline_events: currency_code: 'EURO': not a 3-letter currency code"
    )
    assert rows.rows == 0  # emptied by the flush, ready for the next batch


def test_converting_rows_chunk_by_chunk_gives_the_batch_of_converting_them_at_once() -> None:
    payloads = [deposit() for _ in range(10)]
    payloads[4] = deposit(amount=7)  # a number where text belongs
    payloads[5] = deposit(fee_amount="-1")
    payloads[9] = deposit(event_id="not-a-uuid")
    rows = [row_from_json("ledger.events", p) for p in payloads]
    batches = []
    for rows_per_chunk in (1, 3, len(rows) + 1):  # the last: every row in one conversion
        builder = EventsBatchBuilder(rows_per_chunk)
        for one in rows:
            builder.add(one)
        batches.append(builder.finish())
    for batch in batches:
        assert batch.table.equals(batches[-1].table) and batch.rejected == batches[-1].rejected
    assert sorted(batches[-1].rejected) == [4, 5, 9]
    assert batches[-1].table.num_rows == 7

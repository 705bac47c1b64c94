"""The sink: every pipeline record into ClickHouse, in batches bounded by rows and by time:
requests, decisions (approved, rejected, held for review) and the ledger's outcomes.

At least once from Kafka, at most once into ClickHouse: before a batch is inserted, its
repeated event ids are dropped and so are the ids the table already holds (one query,
narrowed by the batch's kinds and times). The materialized roll-ups see every inserted row,
so this is what keeps a replay from counting twice; the ReplacingMergeTree keyed by event
id is the second line for the raw table. Kafka offsets are committed only after the batch
is in ClickHouse. A record that cannot be decoded or mapped (``analytics.mapping`` per
record, then ``analytics.clickhouse.events_batch`` per column for ids, times and amounts)
goes to its topic's dead-letter companion with the reason, before the batch's offsets are
committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaException, Message, Producer

from analytics.clickhouse import Warehouse, events_batch
from analytics.mapping import row_from_json
from analytics.settings import AnalyticsSettings
from domain.exceptions import RecordDecodeError
from domain.topics import (
    LEDGER_COMMANDS,
    LEDGER_EVENTS,
    REVIEWS_REQUESTED,
    TRANSACTIONS_REJECTED,
    TRANSACTIONS_REQUESTED,
    dead_letter_headers,
)

log = logging.getLogger("analytics")
SINK_TOPICS = (
    TRANSACTIONS_REQUESTED.name,
    LEDGER_COMMANDS.name,
    TRANSACTIONS_REJECTED.name,
    LEDGER_EVENTS.name,
    REVIEWS_REQUESTED.name,
)
POLL_MESSAGES_MAX = 2_000
#: DateTime64(3) keeps milliseconds: widen the lookup window past the truncation.
TIME_SLACK = timedelta(milliseconds=2)


def first_of_each_event(ids: Sequence[str]) -> list[bool]:
    """Which rows to keep so that each event id stays once, the first (order kept)."""
    if len(set(ids)) == len(ids):  # the usual batch: one set built in C, no loop
        return [True] * len(ids)
    seen: set[str] = set()
    keep = []
    for event_id in ids:
        keep.append(event_id not in seen)
        seen.add(event_id)
    return keep


def store_new_events(warehouse: Warehouse, table: pa.Table) -> int:
    """Insert the rows of ``table`` (an ``events_batch``) whose event id is not stored yet;
    return how many went in."""
    if not table.num_rows:
        return 0
    ids = table.column("event_id").to_pylist()
    first = first_of_each_event(ids)
    earliest, latest = pc.min_max(table.column("event_time")).values()
    stored = warehouse.stored_event_ids(
        sorted(pc.unique(table.column("event_kind")).to_pylist()),
        [event_id for event_id, keep in zip(ids, first, strict=True) if keep],
        earliest.as_py() - TIME_SLACK,
        latest.as_py() + TIME_SLACK,
    )
    fresh = [keep and event_id not in stored for event_id, keep in zip(ids, first, strict=True)]
    new = table.filter(pa.array(fresh, pa.bool_())) if not all(fresh) else table
    warehouse.insert_events(new)
    return new.num_rows


class EventSink:
    def __init__(self, settings: AnalyticsSettings, warehouse: Warehouse) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.rows_written = 0
        self.duplicates_dropped = 0
        self.dead_letters = 0
        self.consuming = threading.Event()

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": s.consumer_group,
                "enable.auto.commit": False,
                "auto.offset.reset": s.consumer_offset_reset,
                "isolation.level": "read_committed",
            }
        )
        producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "acks": "all", "linger.ms": 5})
        consumer.subscribe(
            list(SINK_TOPICS), on_assign=lambda _consumer, _parts: self.consuming.set()
        )
        rows: list[tuple[Any, ...]] = []
        messages: list[Message] = []  # each row's record, to dead-letter it if it cannot go in
        batch_started = time.monotonic()
        try:
            while not stop.is_set():
                room = s.batch_rows_max - len(rows)
                for message in consumer.consume(min(POLL_MESSAGES_MAX, room), timeout=0.1):
                    self._take(message, rows, messages, producer)
                elapsed_ms = (time.monotonic() - batch_started) * 1000
                if len(rows) >= s.batch_rows_max or (rows and elapsed_ms >= s.flush_interval_ms):
                    self._flush(rows, messages, consumer, producer)
                    rows, messages = [], []
                    batch_started = time.monotonic()
                elif not rows:
                    batch_started = time.monotonic()
            if rows:
                self._flush(rows, messages, consumer, producer)
        finally:
            consumer.close()
            producer.flush(5)

    def _take(
        self,
        message: Message,
        rows: list[tuple[Any, ...]],
        messages: list[Message],
        producer: Producer,
    ) -> None:
        if message.error():
            log.warning("consumer error: %s", message.error())
            return
        try:
            rows.append(row_from_json(message.topic(), message.value()))
        except RecordDecodeError as error:
            self._dead_letter(message, producer, error.message)
            return
        messages.append(message)

    def _dead_letter(self, message: Message, producer: Producer, reason: str) -> None:
        producer.produce(
            f"{message.topic()}.dlq",
            key=message.key(),
            value=message.value(),
            headers=dead_letter_headers(
                message.topic(), message.partition(), message.offset(), reason
            ),
        )
        self.dead_letters += 1

    def _flush(
        self,
        rows: list[tuple[Any, ...]],
        messages: list[Message],
        consumer: Consumer,
        producer: Producer,
    ) -> None:
        batch = events_batch(rows)
        for index, reason in batch.rejected.items():
            self._dead_letter(messages[index], producer, f"cannot map to pipeline_events: {reason}")
        written = store_new_events(self.warehouse, batch.table)
        producer.flush(10)  # dead letters of this batch are out before its offsets commit
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as error:
            # A rebalance between the poll and the commit leaves nothing to commit here
            # (_NO_OFFSET), or the group moved on (the partitions are someone else's now).
            # The rows are stored; whoever reads those records again stores them once more,
            # and the table drops event ids it has already (a replay counts once).
            log.warning("offset commit skipped: %s", error.args[0])
        self.rows_written += written
        self.duplicates_dropped += batch.table.num_rows - written

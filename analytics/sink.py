"""The sink: every pipeline record into ClickHouse, in batches bounded by rows and by time:
requests, decisions (approved, rejected, held for review) and the ledger's outcomes.

At least once from Kafka, at most once into ClickHouse: before a batch is inserted, its
repeated event ids are dropped and so are the ids the table already holds (one query,
narrowed by the batch's kinds and times). The materialized roll-ups see every inserted row,
so this is what keeps a replay from counting twice; the ReplacingMergeTree keyed by event
id is the second line for the raw table. Kafka offsets are committed only after the batch
is in ClickHouse. A record that cannot be decoded or mapped goes to its topic's dead-letter
companion with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer

from analytics.clickhouse import EVENT_ID, EVENT_KIND, EVENT_TIME, Warehouse
from analytics.mapping import event_row
from analytics.settings import AnalyticsSettings
from domain import records
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


def decode(topic: str | None, payload: bytes | None) -> Any:
    """A review request has a topic of its own; every other record decodes by its kind."""
    if topic == REVIEWS_REQUESTED.name:
        return records.decode_review_requested(payload)
    return records.decode_transaction_record(payload)


def first_of_each_event(rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """Drop repeats of an event id within a batch, keeping the first (order kept)."""
    seen: set[Any] = set()
    unique = []
    for row in rows:
        if row[EVENT_ID] not in seen:
            seen.add(row[EVENT_ID])
            unique.append(row)
    return unique


def store_new_events(warehouse: Warehouse, rows: Sequence[Sequence[Any]]) -> int:
    """Insert the rows whose event id is not stored yet; return how many went in."""
    unique = first_of_each_event(rows)
    if not unique:
        return 0
    times = [row[EVENT_TIME] for row in unique]
    stored = warehouse.stored_event_ids(
        sorted({row[EVENT_KIND] for row in unique}),
        [row[EVENT_ID] for row in unique],
        min(times) - TIME_SLACK,
        max(times) + TIME_SLACK,
    )
    fresh = [row for row in unique if row[EVENT_ID] not in stored]
    warehouse.insert_events(fresh)
    return len(fresh)


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
        rows: list[list[Any]] = []
        batch_started = time.monotonic()
        try:
            while not stop.is_set():
                room = s.batch_rows_max - len(rows)
                for message in consumer.consume(min(POLL_MESSAGES_MAX, room), timeout=0.1):
                    self._take(message, rows, producer)
                elapsed_ms = (time.monotonic() - batch_started) * 1000
                if len(rows) >= s.batch_rows_max or (rows and elapsed_ms >= s.flush_interval_ms):
                    self._flush(rows, consumer, producer)
                    rows = []
                    batch_started = time.monotonic()
                elif not rows:
                    batch_started = time.monotonic()
            if rows:
                self._flush(rows, consumer, producer)
        finally:
            consumer.close()
            producer.flush(5)

    def _take(self, message: Message, rows: list[list[Any]], producer: Producer) -> None:
        if message.error():
            log.warning("consumer error: %s", message.error())
            return
        try:
            rows.append(event_row(decode(message.topic(), message.value())))
        except RecordDecodeError as error:
            self._dead_letter(message, producer, error.message)
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            self._dead_letter(message, producer, f"cannot map to pipeline_events: {error!r}")

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

    def _flush(self, rows: list[list[Any]], consumer: Consumer, producer: Producer) -> None:
        written = store_new_events(self.warehouse, rows)
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
        self.duplicates_dropped += len(rows) - written

"""The sink: every pipeline record into ClickHouse, in batches bounded by rows and by time:
requests, decisions (approved, rejected, held for review) and the ledger's outcomes.

The sink never stops for a failure: Kafka going away is waited out (librdkafka reconnects),
and a batch that cannot be finished (its dead letters not acknowledged, its insert failed)
restarts the loop after a bounded backoff from the committed offsets.

At least once from Kafka, at most once into ClickHouse: before a batch is inserted, its
repeated event ids are dropped and so are the ids the table already holds (one query,
narrowed by the batch's kinds and times). The materialized roll-ups see every inserted row,
so this is what keeps a replay from counting twice; the ReplacingMergeTree keyed by event
id is the second line for the raw table. Kafka offsets are committed only after the batch
is in ClickHouse. A record that cannot be decoded or mapped (``analytics.mapping`` per
record, natively or by ``row_from_json``, then ``analytics.clickhouse.events_batch`` per column
for ids, times and amounts) goes to its topic's dead-letter companion with the reason, before
the batch's offsets are committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from analytics.clickhouse import EventsBatchBuilder, Warehouse
from analytics.exceptions import SinkInterrupted
from analytics.settings import AnalyticsSettings
from domain.backoff import Backoff
from domain.kafka_clients import batching_producer, bulk_consumer
from domain.topics import (
    LEDGER_COMMANDS,
    LEDGER_EVENTS,
    REVIEWS_REQUESTED,
    TRANSACTIONS_REJECTED,
    TRANSACTIONS_REQUESTED,
    dead_letter_headers,
)
from infra import metrics

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
#: After a failure the loop starts again in 0.5 s, 1 s, ... up to this long.
RESTART_DELAY_MAX_S = 10.0
#: A loop that ran this long before failing starts its backoff over.
HEALTHY_AFTER_S = 60.0
DEAD_LETTER_TIMEOUT_S = 10.0
LOG_EVERY_S = 10.0


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
    return how many went in. The ids stay in Arrow (a count of distinct ids, a set lookup in
    C): a batch's 50,000 ids as Python strings cost the storing thread about 1 µs a row
    under the GIL, time the decoding thread waited for."""
    if not table.num_rows:
        return 0
    ids = table.column("event_id")
    if pc.count_distinct(ids).as_py() != table.num_rows:  # a replay inside one batch
        table = table.filter(pa.array(first_of_each_event(ids.to_pylist()), pa.bool_()))
        ids = table.column("event_id")
    earliest, latest = pc.min_max(table.column("event_time")).values()
    stored = warehouse.stored_event_ids(
        sorted(pc.unique(table.column("event_kind")).to_pylist()),
        ids,
        earliest.as_py() - TIME_SLACK,
        latest.as_py() + TIME_SLACK,
    )
    if stored:
        table = table.filter(pc.invert(pc.is_in(ids, value_set=pa.array(sorted(stored)))))
    warehouse.insert_events(table)
    return table.num_rows


@dataclass
class _Stored:
    """A batch handed to the storing thread, and the offsets to commit once it is in."""

    written: Future[int]
    rows: int
    offsets: list[TopicPartition]


class EventSink:
    """Consumes, decodes and checks batch N+1 in its own thread while a second thread stores
    batch N: the engine releases the GIL while it inserts, so on two cores the sink's rows/s
    is about the slower of the two stages rather than their sum. One batch at most is being
    stored (the queue between the two is one deep); a batch's offsets are committed once it
    is stored, and never before the dead letters of its records are out."""

    def __init__(self, settings: AnalyticsSettings, warehouse: Warehouse) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.rows_written = 0
        self.duplicates_dropped = 0
        self.dead_letters = 0
        self.consuming = threading.Event()
        self.restarts = 0
        self.last_error: str | None = None
        self._last_warning = 0.0

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop``; a failure restarts the loop after a backoff."""
        backoff = Backoff(0.5, RESTART_DELAY_MAX_S)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self._consume(stop)
            except Exception as error:  # noqa: BLE001 - any failure: consume again, later
                self.restarts += 1
                self.last_error = f"{type(error).__name__}: {error}"
                if time.monotonic() - started > HEALTHY_AFTER_S:
                    backoff.reset()
                delay = backoff.next_delay()
                log.exception(
                    "sink failed; consuming again from the committed offsets in %.1fs", delay
                )
                stop.wait(delay)

    def _consume(self, stop: threading.Event) -> None:
        s = self.settings
        consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": s.consumer_group,
                "enable.auto.commit": False,
                "auto.offset.reset": s.consumer_offset_reset,
                "isolation.level": "read_committed",
                **metrics.consumer_statistics_config("analytics"),
                **bulk_consumer(),
            }
        )
        producer = Producer(
            {"bootstrap.servers": s.kafka_bootstrap, "acks": "all", **batching_producer()}
        )
        consumer.subscribe(
            [s.topic_prefix + topic for topic in SINK_TOPICS],
            on_assign=lambda _consumer, _parts: self.consuming.set(),
        )
        batch = EventsBatchBuilder()  # converted to Arrow as they come (see ROWS_PER_CHUNK)
        messages: list[Message] = []  # each row's record, to dead-letter it if it cannot go in
        positions: dict[tuple[str, int], int] = {}  # next offset per partition, this batch
        storing: _Stored | None = None
        batch_started = time.monotonic()
        store = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-store")
        try:
            while not stop.is_set():
                room = s.batch_rows_max - batch.rows
                for message in consumer.consume(min(POLL_MESSAGES_MAX, room), timeout=0.1):
                    self._take(message, batch, messages)
                    if not message.error():
                        positions[(message.topic(), message.partition())] = message.offset() + 1
                if storing is not None and storing.written.done():
                    self._committed(storing, consumer)  # a quiet sink commits too
                    storing = None
                elapsed_ms = (time.monotonic() - batch_started) * 1000
                if batch.rows >= s.batch_rows_max or (
                    batch.rows and elapsed_ms >= s.flush_interval_ms
                ):
                    table = self._prepare(batch, messages, producer)
                    if storing is not None:
                        self._committed(storing, consumer)
                    storing = _Stored(
                        store.submit(store_new_events, self.warehouse, table),
                        table.num_rows,
                        [TopicPartition(t, p, o) for (t, p), o in positions.items()],
                    )
                    messages, positions = [], {}
                    batch_started = time.monotonic()
                elif not batch.rows:
                    batch_started = time.monotonic()
            if storing is not None:
                self._committed(storing, consumer)
            if batch.rows:
                self._flush(batch, messages, consumer, producer)
        finally:
            store.shutdown(wait=True)
            consumer.close()
            producer.flush(5)

    def _take(self, message: Message, rows: EventsBatchBuilder, messages: list[Message]) -> None:
        """A record joins the batch as it is; it is decoded with its chunk (its dead letter,
        if it cannot be, goes out when the batch is prepared, before its offsets commit)."""
        if message.error():
            if time.monotonic() - self._last_warning >= LOG_EVERY_S:
                self._last_warning = time.monotonic()
                log.warning("consumer error: %s", message.error())
            return
        topic = message.topic() or ""
        rows.add_record(topic[len(self.settings.topic_prefix) :], message.value())
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
        metrics.ERRORS.labels("analytics", "DEAD_LETTER").inc()

    def _prepare(
        self, rows: EventsBatchBuilder, messages: list[Message], producer: Producer
    ) -> pa.Table:
        """The batch's table (``rows`` is empty again afterwards); the records it leaves out,
        and those the decoder refused, are on their dead-letter topics when this returns."""
        batch = rows.finish()
        for index, reason in batch.undecodable.items():
            self._dead_letter(messages[index], producer, reason)
        for index, reason in batch.rejected.items():
            self._dead_letter(messages[index], producer, f"cannot map to pipeline_events: {reason}")
        # Dead letters of this batch are out before its offsets commit.
        if producer.flush(DEAD_LETTER_TIMEOUT_S):
            raise SinkInterrupted("Kafka did not acknowledge the batch's dead letters in time")
        return batch.table

    def _committed(self, stored: _Stored, consumer: Consumer) -> None:
        """Wait for a batch to be stored (its error, if any, stops the sink as it did when
        the sink stored inline), then commit its offsets."""
        written = stored.written.result()
        self._commit(consumer, stored.offsets)
        self.rows_written += written
        self.duplicates_dropped += stored.rows - written
        _count_stored(stored.rows, written)

    def _commit(self, consumer: Consumer, offsets: list[TopicPartition] | None) -> None:
        try:
            if offsets is None:
                consumer.commit(asynchronous=False)
            elif offsets:
                consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            # A rebalance between the poll and the commit leaves nothing to commit here
            # (_NO_OFFSET), or the group moved on (the partitions are someone else's now).
            # The rows are stored; whoever reads those records again stores them once more,
            # and the table drops event ids it has already (a replay counts once).
            log.warning("offset commit skipped: %s", error.args[0])

    def _flush(
        self,
        rows: EventsBatchBuilder,
        messages: list[Message],
        consumer: Consumer,
        producer: Producer,
    ) -> None:
        """Store one batch in this thread and commit what was consumed (the last batch, at
        stop, after the one being stored is in)."""
        table = self._prepare(rows, messages, producer)
        written = store_new_events(self.warehouse, table)
        self._commit(consumer, None)
        self.rows_written += written
        self.duplicates_dropped += table.num_rows - written
        _count_stored(table.num_rows, written)


def _count_stored(rows: int, written: int) -> None:
    """``/metrics``: a stored batch's size, its new rows and the replays it dropped."""
    metrics.BATCH_RECORDS.labels("analytics").observe(rows)
    metrics.RECORDS.labels("analytics", "pipeline_events", "stored").inc(written)
    metrics.RECORDS.labels("analytics", "pipeline_events", "duplicate").inc(rows - written)

"""The sink: every pipeline record into ClickHouse, in batches bounded by rows and by time.

At least once into a ReplacingMergeTree keyed by event id: a replay after a crash inserts
rows that merge away, and reports count distinct event ids, so nothing is counted twice.
Kafka offsets are committed only after the batch is in ClickHouse.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer, Message, Producer

from analytics.clickhouse import Warehouse
from analytics.mapping import event_row
from analytics.settings import AnalyticsSettings
from domain import records
from domain.exceptions import RecordDecodeError
from domain.topics import (
    LEDGER_COMMANDS,
    LEDGER_EVENTS,
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
)
POLL_MESSAGES_MAX = 2_000


class EventSink:
    def __init__(self, settings: AnalyticsSettings, warehouse: Warehouse) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.rows_written = 0
        self.dead_letters = 0

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": s.consumer_group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "acks": "all", "linger.ms": 5})
        consumer.subscribe(list(SINK_TOPICS))
        rows: list[list[Any]] = []
        batch_started = time.monotonic()
        try:
            while not stop.is_set():
                for message in consumer.consume(POLL_MESSAGES_MAX, timeout=0.1):
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
            rows.append(event_row(records.decode_transaction_record(message.value())))
        except RecordDecodeError as error:
            producer.produce(
                f"{message.topic()}.dlq",
                key=message.key(),
                value=message.value(),
                headers=dead_letter_headers(
                    message.topic(), message.partition(), message.offset(), error.message
                ),
            )
            self.dead_letters += 1

    def _flush(self, rows: list[list[Any]], consumer: Consumer, producer: Producer) -> None:
        self.warehouse.insert_events(rows)
        producer.flush(10)  # dead letters of this batch are out before its offsets commit
        consumer.commit(asynchronous=False)
        self.rows_written += len(rows)

"""Kafka plumbing of the writer: offsets from PostgreSQL, dead letters, outbox relay."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeAlias

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from domain.kafka_clients import batching_producer, hot_path_consumer
from domain.topics import dead_letter_headers
from ledger_writer.exceptions import KafkaUnavailable

log = logging.getLogger("ledger_writer")

#: (topic, key, value, headers): one record for ``send_and_wait``.
OutgoingRecord: TypeAlias = tuple[str, bytes | str, bytes, list[tuple[str, bytes]]]


#: While the broker is down librdkafka tries again every half of reconnect.backoff.ms (and
#: logs each refusal): once a second keeps the log readable and recovery prompt.
_RECONNECT = {"reconnect.backoff.ms": 1000, "reconnect.backoff.max.ms": 5000}


def consumer_config(bootstrap: str, group: str, session_timeout_ms: int) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        # Offsets live in PostgreSQL, committed with the postings; Kafka's are never used.
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        **hot_path_consumer(),
        "max.partition.fetch.bytes": 4 * 1024 * 1024,
        # A writer killed with -9 holds its partitions until this expires: keep it short.
        "session.timeout.ms": session_timeout_ms,
        **_RECONNECT,
    }


def producer_config(bootstrap: str) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        **batching_producer(),
        "partitioner": "murmur2_random",
        **_RECONNECT,
    }


def make_assign_callback(
    load_offsets: Callable[[str], dict[int, int]],
) -> Callable[[Consumer, list[TopicPartition]], None]:
    """On assignment, start each partition where the last committed batch stopped."""

    def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        by_topic: dict[str, dict[int, int]] = {}
        for tp in partitions:
            stored = by_topic.setdefault(tp.topic, load_offsets(tp.topic))
            tp.offset = stored.get(tp.partition, OFFSET_BEGINNING)
        consumer.assign(partitions)
        log.info("assigned %s", [(tp.topic, tp.partition, tp.offset) for tp in partitions])

    return on_assign


def send_and_wait(producer: Producer, messages: list[OutgoingRecord], timeout_s: float) -> None:
    """Produce a batch and wait for every acknowledgement, or raise."""
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    for topic, key, value, headers in messages:
        while True:
            try:
                producer.produce(
                    topic, key=key, value=value, headers=headers, on_delivery=on_delivery
                )
                break
            except BufferError:
                producer.poll(0.1)
    remaining = producer.flush(timeout_s)
    if remaining or failures:
        raise KafkaUnavailable(
            f"Kafka did not take {remaining + len(failures)} records: {failures[:3]}"
        )


def dead_letter(message: Message, reason: str) -> OutgoingRecord:
    headers = dead_letter_headers(message.topic(), message.partition(), message.offset(), reason)
    return (f"{message.topic()}.dlq", message.key() or b"", message.value() or b"", headers)

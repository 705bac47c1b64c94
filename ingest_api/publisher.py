"""Publishing to Kafka with confluent-kafka, awaited until the broker acknowledged it.

A 202 means the request is durably on ``wallet.commands`` (acks=all, idempotent
producer), so nothing the API accepted can be lost. The producer batches (linger) and a
background thread serves delivery reports back to the event loop.

A broker that restarts does not stop the API: librdkafka reconnects by itself, and a
publish that is not acknowledged within ``timeout_ms`` answers OUTCOME_UNKNOWN (the record
may still be delivered later; ``on_late_delivery`` then says so, and the relay publishes
what never was). A producer the library declares unusable (a fatal error of the idempotent
producer) is replaced by a new one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from domain.kafka_clients import batching_producer
from ingest_api.exceptions import OutcomeUnknown

log = logging.getLogger("ingest_api")
LOG_EVERY_S = 10.0


def producer_config(bootstrap: str, linger_ms: int) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        **batching_producer(linger_ms),
        # murmur2 is what the Java client uses (and the stream's producer): the same wallet
        # key lands in the same partition number on every topic.
        "partitioner": "murmur2_random",
        "queue.buffering.max.messages": 100_000,
    }


class KafkaPublisher:
    def __init__(self, bootstrap: str, linger_ms: int, timeout_ms: int) -> None:
        self._config = {**producer_config(bootstrap, linger_ms), "error_cb": self._on_error}
        self._producer = Producer(self._config)
        self._timeout_s = timeout_ms / 1000
        self._stopping = threading.Event()
        self._broken = threading.Event()
        self._last_logged = 0.0
        self.replaced = 0
        self._poller = threading.Thread(
            target=self._serve_reports, name="kafka-delivery", daemon=True
        )
        self._poller.start()

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._broken.set()
        elif time.monotonic() - self._last_logged >= LOG_EVERY_S:
            self._last_logged = time.monotonic()
            log.warning("Kafka: %s (the producer keeps reconnecting)", error)

    def _serve_reports(self) -> None:
        while not self._stopping.is_set():
            if self._broken.is_set():
                self._replace()
            self._producer.poll(0.05)

    def _replace(self) -> None:
        """A fatal error leaves the producer unusable: the records it still held are
        unacknowledged (their callers answered OUTCOME_UNKNOWN) and a new producer takes
        over."""
        old = self._producer
        self._producer = Producer(self._config)
        self._broken.clear()
        self.replaced += 1
        log.error("Kafka producer had a fatal error; replaced it (%d so far)", self.replaced)
        old.flush(0)

    async def publish(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        on_late_delivery: Callable[[], None] | None = None,
    ) -> None:
        """Return once Kafka acknowledged the record; ``OutcomeUnknown`` if it did not in
        time (``on_late_delivery`` runs on the loop if the record is acknowledged after)."""
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[None] = loop.create_future()

        def on_delivery(error: object, _message: object) -> None:
            def settle() -> None:
                if delivered.done():
                    if error is None and on_late_delivery is not None:
                        on_late_delivery()
                    return
                if error is not None:
                    delivered.set_exception(OutcomeUnknown(f"Kafka refused the record: {error}"))
                else:
                    delivered.set_result(None)

            loop.call_soon_threadsafe(settle)

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        except (BufferError, KafkaException) as error:
            raise OutcomeUnknown(f"Kafka producer is saturated or down: {error}") from None
        try:
            await asyncio.wait_for(delivered, self._timeout_s)
        except TimeoutError:
            raise OutcomeUnknown(
                "Kafka did not acknowledge the record in time; retry with the same Idempotency-Key"
            ) from None

    def close(self, flush_timeout_s: float = 10.0) -> None:
        self._producer.flush(flush_timeout_s)
        self._stopping.set()
        self._poller.join(timeout=2)

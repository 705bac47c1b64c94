"""Publishing to Kafka with confluent-kafka, awaited until the broker acknowledged it.

A 202 means the request is durably on ``wallet.commands`` (acks=all, idempotent
producer), so nothing the API accepted can be lost. The producer batches (linger) and a
background thread serves delivery reports back to the event loop.
"""

from __future__ import annotations

import asyncio
import threading

from confluent_kafka import KafkaException, Producer

from ingest_api.exceptions import Unavailable


def producer_config(bootstrap: str, linger_ms: int) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": linger_ms,
        "compression.type": "lz4",
        # murmur2 is what the Java client uses (and the stream's producer): the same wallet
        # key lands in the same partition number on every topic.
        "partitioner": "murmur2_random",
        "queue.buffering.max.messages": 100_000,
    }


class KafkaPublisher:
    def __init__(self, bootstrap: str, linger_ms: int, timeout_ms: int) -> None:
        self._producer = Producer(producer_config(bootstrap, linger_ms))
        self._timeout_s = timeout_ms / 1000
        self._stopping = threading.Event()
        self._poller = threading.Thread(
            target=self._serve_reports, name="kafka-delivery", daemon=True
        )
        self._poller.start()

    def _serve_reports(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[None] = loop.create_future()

        def on_delivery(error: object, _message: object) -> None:
            def settle() -> None:
                if delivered.done():
                    return
                if error is not None:
                    delivered.set_exception(Unavailable(f"Kafka refused the record: {error}"))
                else:
                    delivered.set_result(None)

            loop.call_soon_threadsafe(settle)

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        except (BufferError, KafkaException) as error:
            raise Unavailable(f"Kafka producer is saturated or down: {error}") from None
        try:
            await asyncio.wait_for(delivered, self._timeout_s)
        except TimeoutError:
            raise Unavailable("Kafka did not acknowledge the record in time") from None

    def close(self, flush_timeout_s: float = 10.0) -> None:
        self._producer.flush(flush_timeout_s)
        self._stopping.set()
        self._poller.join(timeout=2)

"""Read the pipeline's topics and store one delivery per event and subscribed endpoint.

At least once: a batch's deliveries are committed to PostgreSQL before the batch's offsets
are committed to Kafka; a batch read again makes no second delivery (an endpoint holds an
event id once). A batch that cannot be stored (PostgreSQL away) is kept and stored again
after a bounded backoff before anything more is read, so the pipeline's topics are never
slowed: this consumer only falls behind, and catches up.

Only records of the kinds in ``EVENT_SOURCES`` are decoded (a byte search for the kind
first), and only events some endpoint listens to are stored.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from domain.backoff import Backoff
from domain.webhooks import WebhookEvent, event_of
from infra import metrics
from notifications import store
from notifications.exceptions import KafkaClientBroken
from notifications.settings import EVENT_SOURCES, NotificationSettings

log = logging.getLogger("notifications.fanout")
POLL_TIMEOUT_S = 0.5


def _kind_markers(kinds: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(f'"kind":"{kind}"'.encode() for kind in kinds)


MARKERS = {topic: _kind_markers(kinds) for topic, kinds in EVENT_SOURCES.items()}


def events_in(messages: list[Message]) -> list[WebhookEvent]:
    """The events the messages announce, in order; a record that does not fit its kind is
    logged and skipped (its producer validated it; this service only reads it)."""
    events: list[WebhookEvent] = []
    for message in messages:
        value = message.value()
        markers = MARKERS.get(message.topic() or "", ())
        if not value or not any(marker in value for marker in markers):
            continue
        try:
            event = event_of(orjson.loads(value))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            log.warning(
                "skipped a record of %s[%s]@%s that is no valid event: %r",
                message.topic(),
                message.partition(),
                message.offset(),
                error,
            )
            continue
        if event is not None:
            events.append(event)
    return events


class FanOut:
    """The consumer loop (run in a thread of the service); ``stored`` is called after each
    batch that made deliveries, to wake the scheduler, and ``crashed`` if the loop dies of
    an error it does not expect (the service then exits and its supervisor restarts it,
    rather than go on delivering without a consumer)."""

    def __init__(
        self,
        settings: NotificationSettings,
        stop: threading.Event,
        stored: Callable[[], None],
        crashed: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.stored = stored
        self.crashed = crashed
        self._pairs: set[tuple[uuid.UUID, str]] = set()
        self._pairs_read_at = float("-inf")

    def _consumer(self) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "group.id": self.settings.consumer_group,
                "enable.auto.commit": False,
                # A new group starts at the end: a new endpoint is not sent the past.
                "auto.offset.reset": "latest",
                "isolation.level": "read_committed",
                **metrics.consumer_statistics_config("notifications"),
            }
        )
        consumer.subscribe(list(EVENT_SOURCES))
        return consumer

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("the consumer loop failed")
            self.crashed()
            raise

    def _run(self) -> None:
        backoff = Backoff(initial_s=0.2, delay_max_s=10.0)
        while not self.stop.is_set():
            consumer = self._consumer()
            try:
                self._serve(consumer, backoff)
            except KafkaClientBroken as error:
                log.warning("consumer broken (%s); making a new one", error)
                self.stop.wait(backoff.next_delay())
            finally:
                consumer.close()

    def _serve(self, consumer: Consumer, backoff: Backoff) -> None:
        unstored: list[Message] = []
        conn: psycopg.Connection[Any] | None = None
        try:
            while not self.stop.is_set():
                if not unstored:
                    unstored = self._read(consumer)
                    if not unstored:
                        continue
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(
                            self.settings.database_url, autocommit=True, connect_timeout=5
                        )
                    made = self._store(conn, unstored)
                except psycopg.Error as error:
                    log.warning("could not store a batch (%s); retrying", error)
                    if conn is not None:
                        conn.close()
                    conn = None
                    self.stop.wait(backoff.next_delay())
                    continue
                backoff.reset()
                unstored = []
                try:
                    consumer.commit(asynchronous=False)
                except KafkaException as error:  # read again after a restart: no harm
                    log.warning("offset commit failed (%s); the next one covers it", error)
                if made:
                    self.stored()
        finally:
            if conn is not None:
                conn.close()

    def _read(self, consumer: Consumer) -> list[Message]:
        messages = consumer.consume(self.settings.batch_size_max, timeout=POLL_TIMEOUT_S)
        kept = []
        for message in messages:
            error = message.error()
            if error is None:
                kept.append(message)
            elif error.fatal():
                raise KafkaClientBroken(str(error))
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer: %s", error)
        return kept

    def _subscribed(self, conn: psycopg.Connection[Any]) -> set[tuple[uuid.UUID, str]]:
        now = time.monotonic()
        if now - self._pairs_read_at >= self.settings.subscriptions_refresh_ms / 1000:
            self._pairs = store.subscribed_pairs(conn)
            self._pairs_read_at = now
        return self._pairs

    def _store(self, conn: psycopg.Connection[Any], messages: list[Message]) -> int:
        pairs = self._subscribed(conn)
        if not pairs:
            return 0
        events = events_in(messages)
        listened = {event_type for _, event_type in pairs}
        events = [e for e in events if e.event_type.value in listened]
        unowned = {e.transaction_id for e in events if e.client_id is None and e.transaction_id}
        owners = store.clients_of(conn, unowned) if unowned else {}
        addressed: list[tuple[WebhookEvent, uuid.UUID]] = []
        for event in events:
            client = event.client_id or owners.get(event.transaction_id)  # type: ignore[arg-type]
            if client is not None and (client, event.event_type.value) in pairs:
                addressed.append((event, client))
        with conn.transaction():
            made = store.store_deliveries(conn, addressed, self.settings.endpoint_pending_max)
        return made

"""The writer's service loop: connect, take the shard's lock, consume and commit batches,
relay the outbox; reconnect with backoff when PostgreSQL or Kafka fails.

A session is one PostgreSQL connection (holding the shard's writer lock, see ``fencing``),
one consumer and one producer. A failure of PostgreSQL ends the session whole, as does a
batch whose dead letters Kafka does not take: the batch in hand was not committed (its
offsets neither), so the next session's consumer starts each partition at the offsets
stored with the last committed batch and reads it again. Nothing is lost and nothing posts
twice. Kafka not taking the outbox's events ends nothing: they wait in the outbox, and the
relay tries again with the same backoff while librdkafka reconnects by itself.
The wait between sessions doubles from ``reconnect_backoff_ms`` up to
``reconnect_backoff_max_ms``; after ``reconnect_attempts_max`` failed sessions in a row the
writer gives up and exits. A ledger invariant breach is never retried: it stops the writer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import psycopg
from confluent_kafka import Consumer, KafkaException, Producer

from infra import metrics
from ledger_writer import fencing, store
from ledger_writer.exceptions import KafkaUnavailable, ReconnectGaveUp
from ledger_writer.kafka_io import consumer_config, make_assign_callback, producer_config
from ledger_writer.writer import LedgerWriter

log = logging.getLogger("ledger_writer")

#: A session that lasted this long was healthy: its failure starts the backoff anew.
HEALTHY_SESSION_S = 30.0
#: What ends a session and is retried: the database or the broker did not answer.
RECOVERABLE = (psycopg.OperationalError, psycopg.InterfaceError, KafkaException, KafkaUnavailable)


def backoff_s(attempt: int, first_ms: int, longest_ms: int) -> float:
    """The wait before reconnection ``attempt`` (1, 2, ...): doubling, capped."""
    return float(min(longest_ms, first_ms * 2 ** min(attempt - 1, 30)) / 1000)


def serve(writer: LedgerWriter, stop: threading.Event) -> None:
    """Run sessions until ``stop`` is set; reconnect after each recoverable failure."""
    s = writer.settings
    failures = 0

    def made_progress() -> None:
        nonlocal failures
        failures = 0

    while not stop.is_set():
        started = time.monotonic()
        try:
            _session(writer, stop, made_progress)
        except RECOVERABLE as error:
            if time.monotonic() - started > HEALTHY_SESSION_S:
                failures = 0
            failures += 1
            if failures > s.reconnect_attempts_max:
                raise ReconnectGaveUp(
                    f"no session after {s.reconnect_attempts_max} attempts: {error}"
                ) from error
            delay = backoff_s(failures, s.reconnect_backoff_ms, s.reconnect_backoff_max_ms)
            log.warning(
                "session ended (%s: %s); reconnecting in %.2f s (attempt %d of %d)",
                type(error).__name__,
                str(error).strip().replace("\n", " ")[:300],
                delay,
                failures,
                s.reconnect_attempts_max,
            )
            stop.wait(delay)


@contextlib.contextmanager
def _connect(url: str, timeout_s: int) -> Iterator[psycopg.Connection]:
    conn = psycopg.connect(url, autocommit=True, connect_timeout=timeout_s)
    try:
        yield conn
    finally:
        conn.close()


def _session(
    writer: LedgerWriter, stop: threading.Event, made_progress: Callable[[], None]
) -> None:
    s = writer.settings
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(_connect(s.shard_database_url, s.connect_timeout_s))
        directory = (
            stack.enter_context(_connect(s.database_url, s.connect_timeout_s))
            if writer.shards.sharded
            else None
        )
        if not fencing.hold(conn, s.group, stop, s.standby_poll_ms / 1000):
            return
        store.ensure_system_accounts(
            conn, datetime.now(UTC), writer.shard, writer.shards.peers(writer.shard)
        )
        consumer = Consumer(
            {
                **consumer_config(s.kafka_bootstrap, s.group, s.session_timeout_ms),
                **metrics.consumer_statistics_config("ledger"),
            }
        )
        producer = Producer(producer_config(s.kafka_bootstrap))
        ended_cleanly = False
        try:
            _consume(writer, stop, conn, directory, consumer, producer, made_progress)
            ended_cleanly = True
        finally:
            _close(consumer, producer, flush=ended_cleanly)


def _consume(
    writer: LedgerWriter,
    stop: threading.Event,
    conn: psycopg.Connection,
    directory: psycopg.Connection | None,
    consumer: Consumer,
    producer: Producer,
    made_progress: Callable[[], None],
) -> None:
    s = writer.settings
    on_assign = make_assign_callback(lambda topic: store.load_offsets(conn, s.group, topic))
    topics = [s.commands_topic, s.rejected_topic, s.gateway_results_topic]
    if writer.shards.sharded:
        topics.append(s.shard_credits_topic)
    consumer.subscribe(topics, on_assign=on_assign)
    log.info("ledger writer of shard %d/%d consuming %s", writer.shard, writer.shards.count, topics)
    last_report = last_sweep = time.monotonic()
    relay = _Relay(writer, conn, producer)
    while not stop.is_set():
        batch = consumer.consume(num_messages=s.batch_size_max, timeout=s.flush_interval_ms / 1000)
        sweep_due = time.monotonic() - last_sweep > s.expiry_sweep_interval_ms / 1000
        if batch or sweep_due:  # every batch also releases expired holds
            writer.process(conn, producer, batch, directory=directory)
            last_sweep = time.monotonic()
            if batch:
                made_progress()
        if relay.run():
            made_progress()
        if time.monotonic() - last_report > s.report_interval_ms / 1000:
            log.info("ledger totals %s", writer.totals)
            last_report = time.monotonic()


class _Relay:
    """The outbox relay of a session. Kafka not taking the events ends nothing: they stay
    in the outbox, batches go on committing, and the relay tries again after a backoff
    (librdkafka reconnects its clients by itself). Only a batch's dead letters that cannot
    be sent end the session, since its consumer has read past records not committed."""

    def __init__(self, writer: LedgerWriter, conn: psycopg.Connection, producer: Producer):
        self.writer, self.conn, self.producer = writer, conn, producer
        self.failures = 0
        self.next_at = 0.0

    def run(self) -> int:
        if time.monotonic() < self.next_at:
            return 0
        s = self.writer.settings
        try:
            relayed = self.writer.relay_outbox(self.conn, self.producer)
        except KafkaUnavailable as error:
            # Not yet sent: dropped, not sent later beside the next attempt's copies.
            self.producer.purge(in_queue=True, in_flight=False)
            self.failures += 1
            if self.failures > s.reconnect_attempts_max:
                raise ReconnectGaveUp(f"the outbox relay failed {self.failures} times") from error
            delay = backoff_s(self.failures, s.reconnect_backoff_ms, s.reconnect_backoff_max_ms)
            self.next_at = time.monotonic() + delay
            log.warning(
                "outbox relay: %s; trying again in %.2f s (attempt %d)", error, delay, self.failures
            )
            return 0
        self.failures = 0
        return relayed


def _close(consumer: Consumer, producer: Producer, *, flush: bool) -> None:
    """End a session's Kafka clients. After a failure, records not yet sent are dropped:
    the outbox rows they came from are still unpublished and go out in the next session,
    and dead letters of an uncommitted batch are sent again with it."""
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as error:
        log.warning("closing the consumer: %s", error)
    if flush:
        producer.flush(5)
    else:
        producer.purge()
        producer.flush(0)

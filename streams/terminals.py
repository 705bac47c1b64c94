"""Terminal fraud features: every worker's copy of every terminal's day counts.

A terminal is shared by wallets of every partition, so no wallet partition owns its
counts. Each partition adds what it approved (or held) at a terminal, and each fraud label
of such a transaction, to its pending counts (``streams.store.TerminalPending``) and sends
them in batches, one ``TerminalCounted`` per terminal and day, on
``streams.terminal-counts``, inside the same Kafka transaction as the state change that
took them off the pending list: exactly once, and no record per request. Every worker
reads that whole topic (read committed) into a ``TerminalBook`` with the feature engine's
own ``observe`` and ``apply_label``; at start it reads the last 40 days before it decides
anything. The window features use only days that ended ``label_delay_days`` before the
request's day, so a count that arrives a batch late is never missed; a fraud label counts
from the moment its batch arrives (``terminal_frauds_recent``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from confluent_kafka import Consumer, KafkaError, TopicPartition

from domain.exceptions import RecordDecodeError
from domain.kafka_clients import bulk_consumer
from domain.records import TerminalCounted, decode_terminal_counted, encode
from models.features import SECONDS_PER_DAY, TerminalState
from streams.features import StreamFeatures

log = logging.getLogger("streams.terminals")
#: How far back a worker reads the terminal counts at start: the longest terminal window
#: (30 days) plus the label delay, and a day of slack.
HISTORY_S = 40 * SECONDS_PER_DAY
#: Counts waiting between the reading thread and the worker's loop; past it the reader waits.
QUEUED_MAX = 100_000


def batch_counts(pending: list[tuple[str, int, bool]]) -> list[TerminalCounted]:
    """One record per terminal and day: the transactions and the frauds of the batch."""
    totals: dict[tuple[str, int], list[int]] = {}
    for terminal, time_s, fraud in pending:
        key = (terminal, time_s // SECONDS_PER_DAY)
        counts = totals.get(key)
        if counts is None:
            counts = totals[key] = [0, 0, time_s]
        counts[1 if fraud else 0] += 1
    return [
        TerminalCounted(terminal=terminal, time_s=time_s, transactions=n, frauds=frauds)
        for (terminal, _day), (n, frauds, time_s) in totals.items()
    ]


class TerminalBook:
    """Every terminal's day counts in this worker, fed from ``streams.terminal-counts``.

    The reading thread only queues what it reads; the worker's loop applies it (``drain``)
    before it scores, so the engine's states are only ever touched by one thread."""

    def __init__(self, features: StreamFeatures) -> None:
        self.features = features
        self.terminals: dict[str, TerminalState] = {}
        self.queued: deque[TerminalCounted] = deque()
        self.applied = 0

    def get(self, terminal: str) -> TerminalState | None:
        return self.terminals.get(terminal)

    def apply(self, counted: TerminalCounted) -> None:
        state = self.terminals.get(counted.terminal)
        if state is None:
            state = self.terminals[counted.terminal] = TerminalState()
        for _ in range(counted.transactions):
            self.features.observe_terminal(counted.terminal, counted.time_s, state)
        for _ in range(counted.frauds):
            self.features.label_terminal(counted.terminal, counted.time_s, state)
        self.applied += 1

    def drain(self) -> None:
        queued = self.queued
        while queued:
            self.apply(queued.popleft())


class TerminalReader:
    """Reads every partition of the terminal counts topic into a ``TerminalBook``: first
    the last ``HISTORY_S`` up to the end (``catch_up``, before the worker decides), then on
    in a thread (``start``)."""

    def __init__(self, bootstrap: str, topic: str, book: TerminalBook) -> None:
        self.topic = topic
        self.book = book
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{topic}-reader",  # never commits: only assign() is used
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                **bulk_consumer(),
            }
        )
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="terminal-counts", daemon=True)

    def catch_up(self, timeout_s: float = 120.0) -> int:
        """Assign every partition from ``HISTORY_S`` ago and read to the end; how many."""
        metadata = self.consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        since_ms = int((time.time() - HISTORY_S) * 1000)
        wanted = [TopicPartition(self.topic, p, since_ms) for p in metadata.partitions]
        starts = self.consumer.offsets_for_times(wanted, timeout=30)
        self.consumer.assign(starts)
        open_partitions = {tp.partition for tp in starts}
        deadline = time.monotonic() + timeout_s
        read = 0
        while open_partitions and time.monotonic() < deadline:
            for message in self.consumer.consume(10_000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard(message.partition())
                    continue
                read += self._take(message.value(), self.book.apply)
        if open_partitions:
            log.warning("terminal counts: partitions %s not read to the end", open_partitions)
        return read

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)
        self.consumer.close()

    def _run(self) -> None:
        queued = self.book.queued
        while not self.stop_event.is_set():
            if len(queued) >= QUEUED_MAX:
                time.sleep(0.05)  # bounded: the worker's loop drains it
                continue
            for message in self.consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    self._take(message.value(), queued.append)

    def _take(self, value: bytes | None, apply) -> int:  # type: ignore[no-untyped-def]
        try:
            apply(decode_terminal_counted(value))
        except RecordDecodeError as error:  # the stream's own records: log, never stop
            log.error("undecodable terminal count: %s", error.message)
            return 0
        return 1


def encoded(counted: TerminalCounted) -> tuple[bytes, bytes]:
    return counted.terminal.encode(), encode(counted)

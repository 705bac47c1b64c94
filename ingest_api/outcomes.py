"""How requests end, learned from Kafka in memory, for ``Prefer: wait=N`` (RFC 7240).

One consumer per API process reads ``ledger.events`` (``TransactionPosted``,
``TransactionFailed``) and ``transactions.rejected`` (``TransactionRejected``) from their
ends, in a thread, without a consumer group (nothing is committed: a process only cares
about requests it accepted while it runs). A request that asks to wait registers its
transaction id *before* it is published, so its outcome cannot pass unseen; the thread
hands each outcome somebody waits for to the event loop. Nobody polls PostgreSQL.

Bounded: at most ``waiters_max`` requests wait at once (past that a request is answered
202 at once, as without the header). While nobody waits, records are fetched and not even
parsed; while someone does, each record costs one orjson parse in the thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from domain.topics import LEDGER_EVENTS, TRANSACTIONS_REJECTED

log = logging.getLogger("ingest_api")

#: Records that end a transaction: the ledger's posting or failure, the stream's rejection.
#: (``DuplicateDiscarded`` is about a repeat, not an ending.)
FINAL_KINDS = frozenset({"TransactionPosted", "TransactionFailed", "TransactionRejected"})
WAIT_S_MAX = 10
FETCH_BATCH_MAX = 1_000


@dataclass(frozen=True)
class Outcome:
    """The final state of a transaction as its ending record tells it."""

    transaction_status: str
    completed_at: str | None
    failure_code: str | None
    failure_reason: str | None
    risk_score: str | None
    captured_amount: str | None

    @classmethod
    def of(cls, record: dict[str, Any]) -> Outcome:
        posted = record["kind"] == "TransactionPosted"
        risk = record.get("risk_score")
        return cls(
            transaction_status="COMPLETED" if posted else "FAILED",
            completed_at=record.get("completed_at") if posted else None,
            failure_code=None if posted else record.get("reason_code"),
            failure_reason=None if posted else record.get("reason_message"),
            risk_score=None if risk is None else str(risk),
            captured_amount=record.get("captured_amount") if posted else None,
        )


def wait_preference(prefer: str | None) -> int | None:
    """The seconds of a ``Prefer`` header's ``wait=N`` (RFC 7240: preferences separated
    by commas, parameters by semicolons), at most WAIT_S_MAX; None without a valid one."""
    if not prefer:
        return None
    for preference in prefer.split(","):
        name, _, value = preference.split(";", 1)[0].strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if value.isascii() and value.isdigit() and len(value) <= 9:
            return min(int(value), WAIT_S_MAX)
        return WAIT_S_MAX if value.isascii() and value.isdigit() else None
    return None


class OutcomeWatcher:
    """The process's one consumer of outcomes and its table of waiters."""

    def __init__(self, bootstrap: str, waiters_max: int) -> None:
        self._bootstrap = bootstrap
        self._waiters_max = waiters_max
        self._waiters: dict[str, asyncio.Future[Outcome]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._consume, name="outcomes", daemon=True)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def register(self, transaction_id: uuid.UUID) -> asyncio.Future[Outcome] | None:
        """Before the record is published; None when waiting is not possible now (the
        consumer has not caught up with the topics' ends yet, or the table is full)."""
        if not self._ready.is_set() or len(self._waiters) >= self._waiters_max:
            return None
        assert self._loop is not None
        future: asyncio.Future[Outcome] = self._loop.create_future()
        self._waiters[str(transaction_id)] = future
        return future

    def forget(self, transaction_id: uuid.UUID) -> None:
        self._waiters.pop(str(transaction_id), None)

    async def wait(
        self, transaction_id: uuid.UUID, future: asyncio.Future[Outcome], timeout_s: float
    ) -> Outcome | None:
        """The outcome if it comes within ``timeout_s``; the waiter is gone afterwards."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            return None
        finally:
            self.forget(transaction_id)

    def _settle(self, transaction_id: str, outcome: Outcome) -> None:
        future = self._waiters.pop(transaction_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    def _consume(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": f"ingest-outcomes-{uuid.uuid4()}",  # never joined: assign()
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
                "enable.partition.eof": False,
            }
        )
        try:
            self._assign_at_ends(consumer)
            while not self._stopping.is_set():
                for message in consumer.consume(FETCH_BATCH_MAX, timeout=0.2):
                    if self._waiters and message.error() is None:
                        self._offer(message.value())
        finally:
            consumer.close()

    def _assign_at_ends(self, consumer: Consumer) -> None:
        topics = (LEDGER_EVENTS.name, TRANSACTIONS_REJECTED.name)
        while not self._stopping.is_set():
            try:
                found = consumer.list_topics(timeout=5).topics
                # The ends as offsets now (not OFFSET_END, resolved at the first fetch), so
                # no outcome produced after ``ready`` can pass before the consumer reads.
                assignment = []
                for topic in topics:
                    for partition in found[topic].partitions:
                        place = TopicPartition(topic, partition)
                        _low, high = consumer.get_watermark_offsets(place, timeout=5)
                        assignment.append(TopicPartition(topic, partition, high))
            except (KafkaException, KeyError) as error:
                log.warning("outcomes consumer waits for Kafka's topics: %s", error)
                self._stopping.wait(1.0)
                continue
            consumer.assign(assignment)
            self._ready.set()
            return

    def _offer(self, value: bytes | None) -> None:
        try:
            record = orjson.loads(value or b"")
            transaction_id = record["transaction_id"]
            kind = record["kind"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return  # not ours to judge: the topic's consumers dead-letter it
        if kind in FINAL_KINDS and transaction_id in self._waiters and self._loop is not None:
            self._loop.call_soon_threadsafe(self._settle, transaction_id, Outcome.of(record))

"""A simulated payment gateway: the external side of two-phase PAYMENT and WITHDRAWAL.

It reads ``AuthorizePayment`` from ``gateway.requests``, waits ``latency_ms`` and answers
on ``gateway.results`` with a ``GatewayResponded``: CAPTURED (the full amount), or DECLINED
for a ``decline_rate`` share of requests chosen by a hash of the transaction id (the same
request always gets the same answer, so tests are deterministic). A request may steer the
simulator through its metadata ``gateway_outcome``: ``decline``, ``void``,
``capture:<amount>`` (a partial capture) or ``none`` (never answer: the hold expires).

At least once: offsets are committed only after the answers are acknowledged, so a crash
repeats answers, and the ledger ignores an answer for a hold that is already closed.

Kafka going away (a broker restart) never stops it: answers that cannot be sent wait and are
sent again with a bounded exponential backoff, a failed offset commit is left to the next
one, and a client the library declares unusable (a fatal error) is replaced by a new one
that resumes from the committed offsets.

Run: ``python -m ledger_writer.gateway`` (``walletpipe run`` starts it).
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain import records
from domain.backoff import Backoff
from domain.exceptions import RecordDecodeError
from domain.kafka_clients import hot_path_consumer
from domain.topics import GATEWAY_REQUESTS, GATEWAY_RESULTS
from infra import metrics
from ledger_writer.exceptions import LedgerWriterError
from ledger_writer.kafka_io import dead_letter, producer_config, send_and_wait

log = logging.getLogger("gateway")
OUTCOME_KEY = "gateway_outcome"


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_prefix="GATEWAY_")

    kafka_bootstrap: str = Field(validation_alias="KAFKA_BOOTSTRAP")
    consumer_group: str = "payment-gateway"
    requests_topic: str = GATEWAY_REQUESTS.name
    results_topic: str = GATEWAY_RESULTS.name
    latency_ms: int = Field(default=200, ge=0, le=600_000)
    decline_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    #: Requests waiting for their latency to pass; consuming pauses when it is full.
    in_flight_max: int = Field(default=10_000, ge=1, le=1_000_000)
    batch_size_max: int = Field(default=1_000, ge=1, le=100_000)
    publish_timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    #: Offsets of answered requests are committed at most this often (each commit is a
    #: write to the broker's offsets log): a crash repeats at most this long's answers,
    #: which the ledger ignores.
    commit_interval_ms: int = Field(default=1_000, ge=0, le=60_000)
    #: Retries after Kafka failed wait 0.2 s, 0.4 s ... up to this long.
    retry_delay_max_ms: int = Field(default=5_000, ge=100, le=300_000)
    #: Static group membership: a gateway restarted after a crash takes its partitions back
    #: at once instead of waiting out the dead one's session (10 s). A second gateway in the
    #: same group needs its own id (two with one id fence each other); empty: dynamic.
    group_instance_id: str = Field(default="payment-gateway-0", max_length=200)


class KafkaClientBroken(Exception):
    """The consumer or producer reported a fatal error: only a new client can go on."""


def decide(
    request: records.AuthorizePayment, decline_rate: float, now: datetime
) -> records.GatewayResponded | None:
    """The gateway's answer to one request (None: it never answers). Pure and deterministic."""
    source = request.source_wallet_id
    if source is None:
        raise RecordDecodeError("a held payment has a source wallet")
    steer = str(request.metadata.get(OUTCOME_KEY) or "")
    answer: dict[str, Any] = {
        "transaction_id": request.transaction_id,
        "wallet_id": source,
        "responded_at": now,
    }
    if steer == "none":
        return None
    if steer == "void":
        return records.GatewayResponded(
            **answer, outcome="VOIDED", reason_message="the merchant voided it"
        )
    if steer == "decline" or (not steer and _unlucky(request, decline_rate)):
        return records.GatewayResponded(
            **answer, outcome="DECLINED", reason_message="declined by the issuer"
        )
    captured = request.amount
    if steer.startswith("capture:"):
        try:
            captured = Decimal(steer.removeprefix("capture:"))
        except InvalidOperation:
            raise RecordDecodeError(f"{OUTCOME_KEY} {steer!r} is not capture:<amount>") from None
    return records.GatewayResponded(**answer, outcome="CAPTURED", captured_amount=captured)


def _unlucky(request: records.AuthorizePayment, decline_rate: float) -> bool:
    digest = hashlib.sha256(request.transaction_id.bytes).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < decline_rate


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.waiting: deque[tuple[float, Message]] = deque()
        self.backoff = Backoff(0.2, settings.retry_delay_max_ms / 1000)
        self.fatal: KafkaError | None = None
        self.reconnects = 0
        self.answered: dict[tuple[str, int], int] = {}  # next offset, not committed yet
        self.committed_at = 0.0

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop``; a broken Kafka client is replaced after a backoff."""
        while not stop.is_set():
            try:
                self._serve(stop)
            except KafkaClientBroken as error:
                self.reconnects += 1
                delay = self.backoff.next_delay()
                log.warning("Kafka client unusable (%s); reconnecting in %.1fs", error, delay)
                stop.wait(delay)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self.fatal = error
        else:  # the broker is away: librdkafka reconnects by itself
            log.info("kafka: %s", error)

    def _serve(self, stop: threading.Event) -> None:
        s = self.settings
        self.fatal = None
        self.waiting.clear()  # a new consumer re-reads whatever was not committed
        self.answered.clear()
        consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": s.consumer_group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10_000,
                **hot_path_consumer(),
                "error_cb": self._on_error,
                **metrics.consumer_statistics_config("gateway"),
                **({"group.instance.id": s.group_instance_id} if s.group_instance_id else {}),
            }
        )
        producer = Producer({**producer_config(s.kafka_bootstrap), "error_cb": self._on_error})
        consumer.subscribe([s.requests_topic])
        log.info("gateway answering %s (latency %d ms)", s.requests_topic, s.latency_ms)
        try:
            while not stop.is_set():
                if self.fatal is not None:
                    raise KafkaClientBroken(str(self.fatal))
                room = min(s.batch_size_max, s.in_flight_max - len(self.waiting))
                timeout_s = 0.01 if self.waiting else 0.2
                try:
                    polled = consumer.consume(max(room, 0), timeout_s) if room > 0 else []
                except KafkaException as error:
                    raise KafkaClientBroken(str(error)) from None
                for message in polled:
                    if message.error() is None:
                        self.waiting.append((time.monotonic() + s.latency_ms / 1000, message))
                if polled:
                    metrics.count_records("gateway", polled)
                if not room:
                    time.sleep(0.01)
                if not self.answer_due(consumer, producer):
                    stop.wait(self.backoff.next_delay())
                self.commit_answered(consumer, force=False)
        finally:
            if self.fatal is None:
                self.commit_answered(consumer, force=True)
            consumer.close()
            producer.flush(5)

    def answer_due(self, consumer: Consumer, producer: Producer) -> bool:
        """Answer every request whose latency has passed (FIFO: latency is constant).
        False when Kafka did not take the answers: they wait at the head for the next try."""
        now_mono = time.monotonic()
        due: list[tuple[float, Message]] = []
        while self.waiting and self.waiting[0][0] <= now_mono and len(due) < 10_000:
            due.append(self.waiting.popleft())
        if not due:
            return True
        outgoing = []
        now = datetime.now(UTC)
        for _at, message in due:
            try:
                request = records.decode_authorize_payment(message.value())
                answer = decide(request, self.settings.decline_rate, now)
            except RecordDecodeError as error:
                outgoing.append(dead_letter(message, error.message))
                continue
            if answer is not None:
                key = str(answer.wallet_id).encode()
                outgoing.append((self.settings.results_topic, key, records.encode(answer), []))
        try:
            send_and_wait(producer, outgoing, self.settings.publish_timeout_ms / 1000)
        except (LedgerWriterError, KafkaException, BufferError) as error:
            # Some answers may be out already: sent again, the ledger ignores the repeats.
            self.waiting.extendleft(reversed(due))
            log.warning("answers not sent (%s); %d waiting", error, len(self.waiting))
            return False
        self.backoff.reset()
        for _at, message in due:
            self.answered[(message.topic(), message.partition())] = message.offset() + 1
        return True

    def commit_answered(self, consumer: Consumer, *, force: bool) -> None:
        """Commit the answered requests' offsets, at most every ``commit_interval_ms``."""
        due = time.monotonic() - self.committed_at >= self.settings.commit_interval_ms / 1000
        if not self.answered or not (force or due):
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.answered.items()]
        self.committed_at = time.monotonic()
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            # The next commit covers these offsets; a crash before it repeats their answers.
            log.warning("offset commit failed (%s); left to the next one", error)
            return
        self.answered.clear()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s gateway %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    metrics.serve_metrics("gateway")
    Gateway(GatewaySettings()).run(stop)  # type: ignore[call-arg]


if __name__ == "__main__":
    main()

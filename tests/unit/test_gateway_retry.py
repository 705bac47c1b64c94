"""The payment gateway while Kafka does not take its answers: they wait at the head of the
queue, nothing is committed, and the next try sends them (again) and commits; answered
offsets are committed at most once per ``commit_interval_ms``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain import records
from domain.transactions import TransactionType
from ledger_writer.gateway import Gateway, GatewaySettings


@dataclass
class Request:
    """The slice of a consumed Kafka message the gateway reads."""

    _value: bytes
    _offset: int

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"k"

    def topic(self) -> str:
        return "gateway.requests"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


@dataclass
class BrokerAway:
    """A producer whose first ``fail_flushes`` flushes leave everything undelivered."""

    fail_flushes: int
    sent: list[bytes] = field(default_factory=list)

    def produce(self, topic: str, key: object, value: bytes, headers: object, on_delivery) -> None:  # noqa: ANN001
        self.sent.append(value)

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        self.fail_flushes -= 1
        return 1 if self.fail_flushes >= 0 else 0


@dataclass
class Committer:
    commits: list[list] = field(default_factory=list)

    def commit(self, offsets: list, asynchronous: bool) -> None:
        self.commits.append(offsets)


def request(offset: int) -> Request:
    now = datetime.now(UTC)
    authorize = records.AuthorizePayment(
        transaction_id=uuid.uuid4(),
        transaction_type=TransactionType.PAYMENT,
        source_wallet_id=uuid.uuid4(),
        destination_wallet_id=None,
        amount=Decimal("5.00"),
        fee_amount=Decimal(0),
        total_amount=Decimal("5.00"),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key=str(uuid.uuid4()),
        requested_at=now,
        hold_expires_at=now + timedelta(minutes=1),
    )
    return Request(records.encode(authorize), offset)


def test_answers_kafka_did_not_take_wait_and_nothing_is_committed() -> None:
    gateway = Gateway(
        GatewaySettings(KAFKA_BOOTSTRAP="127.0.0.1:9", decline_rate=0, publish_timeout_ms=100)
    )
    due = [request(7), request(8)]
    gateway.waiting.extend((0.0, message) for message in due)
    producer, consumer = BrokerAway(fail_flushes=1), Committer()

    assert gateway.answer_due(consumer, producer) is False  # type: ignore[arg-type]
    gateway.commit_answered(consumer, force=True)  # type: ignore[arg-type]
    assert [m for _at, m in gateway.waiting] == due and consumer.commits == []

    assert gateway.answer_due(consumer, producer) is True  # type: ignore[arg-type]
    assert not gateway.waiting
    gateway.commit_answered(consumer, force=False)  # type: ignore[arg-type]
    assert [(tp.topic, tp.partition, tp.offset) for tp in consumer.commits[0]] == [
        ("gateway.requests", 0, 9)
    ]
    answers = [records.decode_gateway_responded(v) for v in producer.sent]
    assert len(answers) == 4  # sent twice: the ledger ignores an answer for a closed hold
    assert {a.outcome for a in answers} == {"CAPTURED"}


def test_answered_offsets_are_committed_once_per_interval() -> None:
    gateway = Gateway(
        GatewaySettings(KAFKA_BOOTSTRAP="127.0.0.1:9", decline_rate=0, commit_interval_ms=60_000)
    )
    producer, consumer = BrokerAway(fail_flushes=0), Committer()
    for offset in (3, 4, 5):
        gateway.waiting.append((0.0, request(offset)))
        assert gateway.answer_due(consumer, producer) is True  # type: ignore[arg-type]
        gateway.commit_answered(consumer, force=False)  # type: ignore[arg-type]
    # The first answer is committed at once, the next two wait for the interval ...
    assert [[tp.offset for tp in c] for c in consumer.commits] == [[4]]
    # ... or for the gateway's stop, which commits what is answered.
    gateway.commit_answered(consumer, force=True)  # type: ignore[arg-type]
    assert [[tp.offset for tp in c] for c in consumer.commits] == [[4], [6]]
    gateway.commit_answered(consumer, force=True)  # type: ignore[arg-type]
    assert len(consumer.commits) == 2  # nothing new answered: no commit

"""The ingest API while PostgreSQL or Kafka is away, as a process (uvicorn), against the real
stack with one of the two pointed at a port where nothing listens.

* PostgreSQL away: the API starts anyway and answers 503 ``UNAVAILABLE_NOT_ACCEPTED`` in the
  error envelope, with Retry-After, for writes and reads: nothing was recorded.
* Kafka away: a transaction is recorded and not published: 503
  ``UNAVAILABLE_OUTCOME_UNKNOWN``. Once an API with Kafka runs, its relay publishes the
  recorded request without any retry, and the retry with the same Idempotency-Key gets the
  first answer (202, the same transaction id), never a second transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from domain.topics import WALLET_COMMANDS
from infra.processes import pick_port
from tests.helpers import ingest_api_process, new_wallet, sql

pytestmark = pytest.mark.integration
STARTUP_S = 60.0


def dead_port() -> int:
    """A port nothing listens on (picked free, and nothing started on it)."""
    return pick_port(47_000, taken=set(), span=1000)


@contextmanager
def ingest(env: dict[str, str], log: Path) -> Iterator[httpx.Client]:
    with ingest_api_process(env, log, port_base=46_000, startup_s=STARTUP_S) as (_process, client):
        yield client


def deposit(wallet: str) -> dict:
    return {
        "transaction_type": "DEPOSIT",
        "destination_wallet_id": wallet,
        "amount": "7.00",
        "currency_code": "USD",
    }


def test_without_postgres_nothing_is_accepted(stack: dict, tmp_path: Path) -> None:
    env = {
        **stack,
        "DATABASE_URL": f"postgresql://wallet@127.0.0.1:{dead_port()}/wallet",
        "DB_ACQUIRE_TIMEOUT_MS": "500",
    }
    with ingest(env, tmp_path / "ingest.log") as api:
        body = deposit(str(uuid.uuid4()))
        answer = api.post("/v1/transactions", json=body, headers={"Idempotency-Key": "k1"})
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "UNAVAILABLE_NOT_ACCEPTED"
        assert answer.headers["Retry-After"] == "1"
        read = api.get(f"/v1/transactions/{uuid.uuid4()}")
        assert read.status_code == 503
        assert read.json()["error"]["code"] == "UNAVAILABLE_NOT_ACCEPTED"


def test_without_kafka_the_outcome_is_unknown_and_the_relay_publishes_it(
    stack: dict, tmp_path: Path
) -> None:
    away = {
        **stack,
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{dead_port()}",
        "PUBLISH_TIMEOUT_MS": "500",
        "RELAY_INTERVAL_MS": "60000",  # this one must not relay: its Kafka is away
    }
    key = str(uuid.uuid4())
    with ingest(away, tmp_path / "away.log") as api:
        wallet = new_wallet(api)  # no limits to publish: PostgreSQL only
        answer = api.post(
            "/v1/transactions", json=deposit(wallet), headers={"Idempotency-Key": key}
        )
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "UNAVAILABLE_OUTCOME_UNKNOWN"
    rows = sql(
        stack["DATABASE_URL"],
        "SELECT transaction_id, published_at FROM transaction_requests WHERE idempotency_key = %s",
        (key,),
    )
    assert len(rows) == 1 and rows[0][1] is None  # recorded, not published
    transaction_id = rows[0][0]

    ends = end_offsets(stack["KAFKA_BOOTSTRAP"])
    back = {**stack, "RELAY_INTERVAL_MS": "100", "RELAY_GRACE_MS": "0"}
    with ingest(back, tmp_path / "back.log") as api:
        deadline = time.monotonic() + 30
        while not sql(
            stack["DATABASE_URL"],
            "SELECT 1 FROM transaction_requests WHERE transaction_id = %s"
            " AND published_at IS NOT NULL",
            (transaction_id,),
        ):
            assert time.monotonic() < deadline, "the relay did not publish the request"
            time.sleep(0.2)
        again = api.post("/v1/transactions", json=deposit(wallet), headers={"Idempotency-Key": key})
        assert again.status_code == 202, again.text
        assert again.json()["transaction_id"] == str(transaction_id)
    assert str(transaction_id) in published_since(stack["KAFKA_BOOTSTRAP"], ends)


def end_offsets(bootstrap: str) -> list[TopicPartition]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}"})
    try:
        topic = WALLET_COMMANDS.name
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p))[1])
            for p in partitions
        ]
    finally:
        consumer.close()


def published_since(bootstrap: str, starts: list[TopicPartition]) -> str:
    """Everything produced to the topic after ``starts``, as one text to search."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign(starts)
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    seen.append(message.value().decode())
        return "\n".join(seen)
    finally:
        consumer.close()

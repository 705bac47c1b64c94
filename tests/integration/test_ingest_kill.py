"""kill -9 of the ingest API loses no accepted request.

A request is recorded (one row of ``transaction_requests``, the commit point) before it is
published, and answered 202 only once Kafka acknowledged it. So:

* killed under load: every request answered 202 is on ``wallet.commands``, and every
  request it had recorded but not yet published is published by the next API's relay;
* killed while a request waits for Kafka's acknowledgement (its Kafka away, so the kill
  lands exactly between recording and publishing): the next API's relay publishes it
  without any retry, and the retry gets the first answer with the same transaction id.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaException

from tests.helpers import ingest_api_process, new_wallet, sql
from tests.integration.test_ingest_outages import dead_port, deposit, end_offsets, published_since

pytestmark = pytest.mark.integration
STARTUP_S = 60.0


def api_process(
    env: dict[str, str], log: Path
) -> AbstractContextManager[tuple[subprocess.Popen[bytes], httpx.Client]]:
    return ingest_api_process(env, log, port_base=45_000, timeout_s=60, startup_s=STARTUP_S)


def topic_ends(bootstrap: str) -> list:
    """The topic's end offsets, once the broker (just started, maybe) leads its partitions."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return end_offsets(bootstrap)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def recorded(database_url: str, keys: list[str]) -> dict[str, tuple[str, bool]]:
    rows = sql(
        database_url,
        "SELECT idempotency_key, transaction_id::text, published_at IS NOT NULL"
        " FROM transaction_requests WHERE idempotency_key = ANY(%s)",
        (keys,),
    )
    return {key: (transaction_id, published) for key, transaction_id, published in rows}


def relayed(env: dict[str, str], log: Path, database_url: str, keys: list[str]) -> None:
    """Run an API with its relay on until every recorded request of ``keys`` is published."""
    back = {**env, "RELAY_INTERVAL_MS": "100", "RELAY_GRACE_MS": "0", "PUBLISH_TIMEOUT_MS": "2000"}
    with api_process(back, log):
        deadline = time.monotonic() + 60
        while not all(published for _id, published in recorded(database_url, keys).values()):
            assert time.monotonic() < deadline, "the relay did not publish every recorded request"
            time.sleep(0.2)


def test_killed_under_load_every_accepted_request_is_published(stack: dict, tmp_path: Path) -> None:
    ends = topic_ends(stack["KAFKA_BOOTSTRAP"])
    keys = [str(uuid.uuid4()) for _ in range(400)]
    accepted: list[str] = []
    with api_process(stack, tmp_path / "a.log") as (process, api):
        wallet = new_wallet(api)

        def send(share: list[str]) -> None:
            with httpx.Client(
                base_url=str(api.base_url), timeout=60, headers={"X-API-Key": stack["DEMO_API_KEY"]}
            ) as client:
                for key in share:
                    try:
                        answer = client.post(
                            "/v1/transactions",
                            json=deposit(wallet),
                            headers={"Idempotency-Key": key},
                        )
                    except httpx.TransportError:
                        return  # killed: this one's outcome is unknown to its caller
                    if answer.status_code == 202:
                        accepted.append(answer.json()["transaction_id"])

        senders = [threading.Thread(target=send, args=(keys[i::8],)) for i in range(8)]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 60
        while len(accepted) < 40:
            assert time.monotonic() < deadline, "the API accepted too little"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        for sender in senders:
            sender.join(timeout=60)
    assert accepted
    relayed(stack, tmp_path / "b.log", stack["DATABASE_URL"], keys)
    on_topic = published_since(stack["KAFKA_BOOTSTRAP"], ends)
    missing = [tid for tid in accepted if tid not in on_topic]
    assert not missing, f"{len(missing)} of {len(accepted)} accepted requests were not published"
    stored = recorded(stack["DATABASE_URL"], keys)
    assert {tid for tid, _ in stored.values()} >= set(accepted)
    unpublished = [tid for tid, _ in stored.values() if tid not in on_topic]
    assert not unpublished, f"{len(unpublished)} recorded requests never reached Kafka"


def test_killed_between_recording_and_publishing_the_relay_publishes(
    stack: dict, tmp_path: Path
) -> None:
    away = {
        **stack,
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{dead_port()}",
        "PUBLISH_TIMEOUT_MS": "60000",  # the request waits in the publish until the kill
        "RELAY_INTERVAL_MS": "60000",
    }
    key = str(uuid.uuid4())
    with api_process(away, tmp_path / "away.log") as (process, api):
        wallet = new_wallet(api)
        caller = threading.Thread(
            target=lambda: _post_ignoring_the_kill(api, deposit(wallet), key), daemon=True
        )
        caller.start()
        deadline = time.monotonic() + 30
        while key not in recorded(stack["DATABASE_URL"], [key]):
            assert time.monotonic() < deadline, "the request was not recorded"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        caller.join(timeout=30)
    transaction_id, published = recorded(stack["DATABASE_URL"], [key])[key]
    assert not published
    ends = topic_ends(stack["KAFKA_BOOTSTRAP"])
    relayed(stack, tmp_path / "back.log", stack["DATABASE_URL"], [key])
    assert transaction_id in published_since(stack["KAFKA_BOOTSTRAP"], ends)
    with api_process(stack, tmp_path / "retry.log") as (_process, api):
        again = api.post("/v1/transactions", json=deposit(wallet), headers={"Idempotency-Key": key})
    assert again.status_code == 202, again.text
    assert again.json()["transaction_id"] == transaction_id


def _post_ignoring_the_kill(api: httpx.Client, body: dict, key: str) -> None:
    try:
        api.post("/v1/transactions", json=body, headers={"Idempotency-Key": key})
    except httpx.TransportError:
        pass  # the API was killed mid-request, as intended

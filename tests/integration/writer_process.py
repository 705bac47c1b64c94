"""The real ledger writer as a process (``python -m ledger_writer.writer``) on private topics
of the shared test stack, for the tests that kill, duplicate or starve it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]


def private_topics(bootstrap: str, tag: str, partitions: int = 4) -> dict[str, str]:
    """The writer's topics under ``tag`` (each with its dead-letter companion), created."""
    names = {
        "LEDGER_COMMANDS_TOPIC": f"{tag}.commands",
        "LEDGER_REJECTED_TOPIC": f"{tag}.rejected",
        "LEDGER_EVENTS_TOPIC": f"{tag}.events",
        "LEDGER_GATEWAY_RESULTS_TOPIC": f"{tag}.gateway-results",
        "LEDGER_GATEWAY_REQUESTS_TOPIC": f"{tag}.gateway-requests",
    }
    wanted = [NewTopic(name, partitions, 1) for name in names.values()]
    wanted += [NewTopic(f"{name}.dlq", 1, 1) for name in names.values()]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(wanted).values():
        future.result(timeout=30)
    return names


def writer_env(stack: dict, tag: str, topics: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": stack["DATABASE_URL"],
        "KAFKA_BOOTSTRAP": stack["KAFKA_BOOTSTRAP"],
        "LEDGER_CONSUMER_GROUP": tag,
        "LEDGER_SESSION_TIMEOUT_MS": "6000",  # a killed member leaves the group sooner
        "PYTHONUNBUFFERED": "1",
        **topics,
        **extra,
    }


def start_writer(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "ledger_writer.writer"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.kill(process.pid, sig)
    process.wait(timeout=60)


def wait_until(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    writer: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` (with the writer's log tail if it
    died or time ran out)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        died = writer is not None and writer.poll() is not None
        if died or time.monotonic() > deadline:
            tail = log_path.read_text()[-3000:] if log_path is not None else ""
            raise AssertionError(f"{'writer exited' if died else 'timed out'}: {what}\n{tail}")
        time.sleep(0.1)


def count(database_url: str, query: str, params: tuple = ()) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list:
    """The first ``expected`` records of ``topic`` (fewer if time runs out)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append(message)
    finally:
        consumer.close()
    return found

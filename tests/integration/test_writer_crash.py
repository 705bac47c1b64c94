"""Crash and resume: kill -9 the real ledger writer process mid-stream, restart it, and prove
every command was posted exactly once and the books still verify.

The writer runs as ``python -m ledger_writer.writer`` against the shared test stack, on
private topics and its own consumer group, so other tests' commands never reach it and it
never relays their outbox rows. Only this test's transaction ids are counted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from domain import records
from domain.transactions import TransactionType
from ledger_writer import store
from ledger_writer.verify import verify
from tests.helpers import ordered_producer
from tests.integration.test_ledger_writer import command, wallet

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMMANDS = 12_000
DUPLICATES = 300
WALLETS = 40
KILLS = 2


def _create_topics(bootstrap: str, names: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, p, 1) for n, p in names.items()])
    for future in futures.values():
        future.result(timeout=30)


def _start_writer(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "ledger_writer.writer"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _posted(conn: psycopg.Connection, tag: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM transactions WHERE description = %s", (tag,)
    ).fetchone()
    return int(row[0]) if row else 0


def _stop(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        os.kill(process.pid, sig)
    process.wait(timeout=30)


def test_kill_9_mid_stream_then_resume_posts_each_command_once(stack: dict, tmp_path: Path) -> None:
    tag = f"crash-{uuid.uuid4().hex[:12]}"
    topics = {f"{tag}.commands": 8, f"{tag}.rejected": 8, f"{tag}.events": 8}
    _create_topics(stack["KAFKA_BOOTSTRAP"], topics)
    with psycopg.connect(stack["DATABASE_URL"], autocommit=True) as conn:
        store.ensure_system_accounts(conn, datetime.now(UTC))
        wallets = [wallet(conn, "1000000") for _ in range(WALLETS)]
        funded = {w: Decimal(1_000_000) for w in wallets}

        rng = random.Random(3)
        commands = []
        for _ in range(COMMANDS):
            source, destination = rng.sample(wallets, 2)
            amount = f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}"
            item = command(TransactionType.TRANSFER, source, destination, amount)
            commands.append(item.model_copy(update={"description": tag}))
        replays = rng.sample(commands, DUPLICATES)  # a producer retry: same transaction id
        producer = ordered_producer(stack["KAFKA_BOOTSTRAP"], **{"linger.ms": 20})
        for item in commands + replays:
            producer.produce(f"{tag}.commands", key=item.partition_key, value=records.encode(item))
            producer.poll(0)
        assert producer.flush(30) == 0

        env = {
            **os.environ,
            "DATABASE_URL": stack["DATABASE_URL"],
            "KAFKA_BOOTSTRAP": stack["KAFKA_BOOTSTRAP"],
            "LEDGER_CONSUMER_GROUP": tag,
            "LEDGER_COMMANDS_TOPIC": f"{tag}.commands",
            "LEDGER_REJECTED_TOPIC": f"{tag}.rejected",
            "LEDGER_EVENTS_TOPIC": f"{tag}.events",
            "LEDGER_SESSION_TIMEOUT_MS": "6000",  # the killed member leaves the group sooner
            "LEDGER_BATCH_SIZE_MAX": "400",  # many small batches: the kill lands mid-stream
            "PYTHONUNBUFFERED": "1",
        }
        log_path = tmp_path / "writer.log"
        kills_done = 0
        seen_at_kill: list[int] = []
        while kills_done < KILLS:
            writer = _start_writer(env, log_path)
            try:
                target = (kills_done + 1) * COMMANDS // (KILLS + 2)
                deadline = time.monotonic() + 120
                while _posted(conn, tag) < target:
                    assert writer.poll() is None, log_path.read_text()[-2000:]
                    assert time.monotonic() < deadline, "writer made no progress"
                    time.sleep(0.02)
            finally:
                _stop(writer, signal.SIGKILL)
            seen_at_kill.append(_posted(conn, tag))
            kills_done += 1
        assert seen_at_kill[-1] < COMMANDS, "the backlog was done before the last kill"

        writer = _start_writer(env, log_path)
        try:
            deadline = time.monotonic() + 180
            while _posted(conn, tag) < COMMANDS:
                assert writer.poll() is None, log_path.read_text()[-2000:]
                assert time.monotonic() < deadline, f"only {_posted(conn, tag)} posted"
                time.sleep(0.1)
            # The replays sit at the end of the topic: wait until the writer has read them.
            deadline = time.monotonic() + 60
            while _outbox_count(conn, f"{tag}.events") < COMMANDS + DUPLICATES:
                assert time.monotonic() < deadline, "replays were not all recognised"
                time.sleep(0.1)
            _wait_relayed(conn, f"{tag}.events")
        finally:
            _stop(writer, signal.SIGTERM)

        ids = [item.transaction_id for item in commands]
        statuses = conn.execute(
            """SELECT transaction_status, count(*) FROM transactions
                WHERE transaction_id = ANY(%s) GROUP BY 1""",
            (ids,),
        ).fetchall()
        assert dict(statuses) == {"COMPLETED": COMMANDS}  # every one, once (primary key)
        entries = conn.execute(
            """SELECT count(*), count(DISTINCT transaction_id) FROM ledger_entries
                WHERE transaction_id = ANY(%s)""",
            (ids,),
        ).fetchone()
        assert entries == (2 * COMMANDS, COMMANDS)  # no posting was written twice
        kinds = dict(
            conn.execute(
                """SELECT convert_from(payload, 'UTF8')::jsonb->>'kind', count(*) FROM outbox
                    WHERE topic = %s GROUP BY 1""",
                (f"{tag}.events",),
            ).fetchall()
        )
        assert kinds == {"TransactionPosted": COMMANDS, "DuplicateDiscarded": DUPLICATES}

        expected = dict(funded)
        for item in commands:
            expected[item.source_wallet_id] -= item.amount
            expected[item.destination_wallet_id] += item.amount
        balances = dict(
            conn.execute(
                "SELECT wallet_id, available_balance FROM wallet_balances"
                " WHERE wallet_id = ANY(%s)",
                (wallets,),
            ).fetchall()
        )
        assert balances == expected
        offsets = store.load_offsets(conn, tag, f"{tag}.commands")
        assert sum(offsets.values()) == COMMANDS + DUPLICATES
    failed = [result.name for result in verify(stack["DATABASE_URL"]) if not result.passed]
    assert failed == []


def _outbox_count(conn: psycopg.Connection, topic: str) -> int:
    row = conn.execute("SELECT count(*) FROM outbox WHERE topic = %s", (topic,)).fetchone()
    return int(row[0]) if row else 0


def _wait_relayed(conn: psycopg.Connection, topic: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM outbox WHERE topic = %s AND published_at IS NULL", (topic,)
        ).fetchone()
        if row and row[0] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the outbox was not relayed")

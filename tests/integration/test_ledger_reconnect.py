"""The real writer process rides out a restart of the test stack's PostgreSQL, then of its
Kafka broker: it reconnects with backoff instead of exiting, resumes from its committed
offsets, and every command sent is posted exactly once."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from domain import records
from domain.transactions import TransactionType
from infra import kafka, postgres
from infra.settings import StackSettings
from ledger_writer import store
from ledger_writer.verify import verify
from tests.helpers import ordered_producer
from tests.integration.test_ledger_writer import command, wallet
from tests.integration.writer_process import (
    count,
    private_topics,
    start_writer,
    stop,
    wait_until,
    writer_env,
)

pytestmark = pytest.mark.integration

PER_PHASE = 800
WALLETS = 16


class Stack:
    """Stop and start the shared test stack's PostgreSQL and Kafka where `up` put them."""

    def __init__(self, stack_dir: Path) -> None:
        self.dir = stack_dir
        self.settings = StackSettings()
        self.state = json.loads((stack_dir / "stack.json").read_text())

    def restart_postgres(self) -> None:
        postgres.stop(self.dir, self.settings)
        self.start_postgres()

    def start_postgres(self) -> None:
        postgres.start(self.dir, self.state["ports"]["postgres"], self.settings)

    def restart_kafka(self) -> None:
        kafka.stop(self.dir, self.settings)
        self.start_kafka()

    def start_kafka(self) -> None:
        ports = self.state["ports"]
        cluster = self.state["kafka_cluster_id"]
        kafka.start(self.dir, ports["kafka"], ports["kafka_controller"], cluster, self.settings)
        kafka.wait_ready(self.dir, ports["kafka"], self.settings, cluster)


def test_the_writer_reconnects_after_postgres_and_kafka_restart(
    stack: dict, stack_dir: Path, tmp_path: Path
) -> None:
    url, bootstrap = stack["DATABASE_URL"], stack["KAFKA_BOOTSTRAP"]
    tag = f"reconnect-{uuid.uuid4().hex[:10]}"
    topics = private_topics(bootstrap, tag)
    with psycopg.connect(url, autocommit=True) as conn:
        store.ensure_system_accounts(conn, datetime.now(UTC))
        wallets = [wallet(conn, "100000") for _ in range(WALLETS)]
    rng = random.Random(11)
    commands = []
    for _ in range(3 * PER_PHASE):
        source, destination = rng.sample(wallets, 2)
        item = command(TransactionType.TRANSFER, source, destination, f"{rng.randint(1, 99)}.50")
        commands.append(item.model_copy(update={"description": tag}))
    phases = [commands[i * PER_PHASE : (i + 1) * PER_PHASE] for i in range(3)]

    def send(items: list[records.PostTransaction]) -> None:
        producer = ordered_producer(bootstrap, **{"linger.ms": 20})
        for item in items:
            producer.produce(
                topics["LEDGER_COMMANDS_TOPIC"], key=item.partition_key, value=records.encode(item)
            )
            producer.poll(0)
        assert producer.flush(60) == 0

    def posted() -> int:
        try:
            return count(url, "SELECT count(*) FROM transactions WHERE description = %s", (tag,))
        except psycopg.OperationalError:
            return -1  # the server is restarting

    env = writer_env(
        stack,
        tag,
        topics,
        LEDGER_BATCH_SIZE_MAX="100",
        LEDGER_RECONNECT_BACKOFF_MAX_MS="500",
        LEDGER_PUBLISH_TIMEOUT_MS="2000",
    )
    log_path = tmp_path / "writer.log"
    services = Stack(stack_dir)
    writer = start_writer(env, log_path)
    try:
        send(phases[0])
        wait_until(lambda: posted() > 0, 60, "first batches posted", writer, log_path)
        services.restart_postgres()  # mid-stream: the backlog is still being posted
        wait_until(lambda: posted() == PER_PHASE, 120, "phase 1 posted", writer, log_path)

        send(phases[1])
        services.restart_kafka()
        send(phases[2])
        wait_until(lambda: posted() == 3 * PER_PHASE, 180, "all posted", writer, log_path)
        with psycopg.connect(url, autocommit=True) as conn:
            wait_until(
                lambda: (
                    conn.execute(
                        "SELECT count(*) FROM outbox WHERE topic = %s AND published_at IS NULL",
                        (topics["LEDGER_EVENTS_TOPIC"],),
                    ).fetchone()
                    == (0,)
                ),
                60,
                "the outbox relayed",
                writer,
                log_path,
            )
        assert writer.poll() is None, "the writer must have run throughout"
    finally:
        services.start_postgres()  # a no-op when running; brings it back if a step failed
        services.start_kafka()
        stop(writer)

    log_text = log_path.read_text()
    assert "reconnecting in" in log_text
    ids = [item.transaction_id for item in commands]
    with psycopg.connect(url, autocommit=True) as conn:
        entries = conn.execute(
            "SELECT count(*), count(DISTINCT transaction_id) FROM ledger_entries"
            " WHERE transaction_id = ANY(%s)",
            (ids,),
        ).fetchone()
        assert entries == (2 * len(commands), len(commands))  # each posted once
        expected = dict.fromkeys(wallets, Decimal(100000))
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
        offsets = store.load_offsets(conn, tag, topics["LEDGER_COMMANDS_TOPIC"])
        assert sum(offsets.values()) == len(commands)
    assert [r.name for r in verify(url) if not r.passed] == []

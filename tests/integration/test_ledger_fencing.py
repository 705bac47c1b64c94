"""One writer per shard, on real PostgreSQL and Kafka: a second writer of the same shard
waits as a standby and cannot write; it takes over when the first dies; and a balance
changed by anyone since a batch read it makes that batch roll back, so an update is never
lost."""

from __future__ import annotations

import random
import signal
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from domain import records
from domain.exceptions import LedgerInvariantError
from domain.transactions import SystemAccount, TransactionType, system_wallet_id
from ledger_writer import planning, store
from ledger_writer.verify import verify
from tests.helpers import ordered_producer
from tests.integration.test_ledger_writer import available, command, fund, wallet
from tests.integration.writer_process import (
    count,
    private_topics,
    start_writer,
    stop,
    wait_until,
    writer_env,
)

pytestmark = pytest.mark.integration

TRANSFER, DEPOSIT = TransactionType.TRANSFER, TransactionType.DEPOSIT


@pytest.fixture()
def conn(stack: dict):
    with psycopg.connect(stack["DATABASE_URL"], autocommit=True) as connection:
        store.ensure_system_accounts(connection, datetime.now(UTC))
        yield connection


def planned(conn: psycopg.Connection, item: records.PostTransaction) -> planning.BatchPlan:
    """A batch planned from the balances as they are now, not yet written."""
    wallets = planning.wallets_of([item]) | {
        system_wallet_id(account, "USD") for account in SystemAccount
    }
    return planning.plan_batch([item], {}, store.load_accounts(conn, wallets), datetime.now(UTC))


def books_balance(database_url: str) -> None:
    assert [r.name for r in verify(database_url) if not r.passed] == []


def test_a_balance_changed_after_the_batch_read_it_rolls_the_batch_back(conn, stack) -> None:
    alice, bob, carol = wallet(conn, "100"), wallet(conn), wallet(conn)
    transfer = command(TRANSFER, alice, bob, "30")
    plan = planned(conn, transfer)
    fund(conn, alice, "5")  # another writer posts to alice between the read and the write
    with pytest.raises(LedgerInvariantError, match="wallet balances updated as read"):
        store.write_plan(conn, plan, {}, "test-fencing", "ledger.events", datetime.now(UTC))
    assert (
        count(
            stack["DATABASE_URL"],
            "SELECT count(*) FROM transactions WHERE transaction_id = %s",
            (transfer.transaction_id,),
        )
        == 0
    )
    assert (available(conn, alice), available(conn, bob)) == (Decimal(105), Decimal(0))

    # The system accounts every writer shares are checked the same way.
    deposit = command(DEPOSIT, None, bob, "7")
    plan = planned(conn, deposit)
    fund(conn, carol, "2")  # moves the external clearing account
    with pytest.raises(LedgerInvariantError, match="system balances updated as read"):
        store.write_plan(conn, plan, {}, "test-fencing", "ledger.events", datetime.now(UTC))
    assert available(conn, bob) == Decimal(0)
    books_balance(stack["DATABASE_URL"])


COMMANDS = 3_000
WALLETS = 20


def test_a_second_writer_of_a_shard_waits_then_takes_over(conn, stack, tmp_path: Path) -> None:
    tag = f"fence-{uuid.uuid4().hex[:10]}"
    topics = private_topics(stack["KAFKA_BOOTSTRAP"], tag)
    wallets = [wallet(conn, "100000") for _ in range(WALLETS)]
    rng = random.Random(10)
    commands = []
    for _ in range(COMMANDS):
        source, destination = rng.sample(wallets, 2)
        item = command(
            TRANSFER, source, destination, f"{rng.randint(1, 300)}.{rng.randint(0, 99):02d}"
        )
        commands.append(item.model_copy(update={"description": tag}))
    env = writer_env(stack, tag, topics, LEDGER_STANDBY_POLL_MS="200", LEDGER_BATCH_SIZE_MAX="200")
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_writer(env, first_log)
    second = None
    try:
        wait_until(
            lambda: "holding the writer lock" in first_log.read_text(),
            60,
            "first writer locks",
            first,
            first_log,
        )
        second = start_writer(env, second_log)
        wait_until(
            lambda: "standby" in second_log.read_text(),
            60,
            "second writer waits",
            second,
            second_log,
        )
        producer = ordered_producer(stack["KAFKA_BOOTSTRAP"], **{"linger.ms": 20})
        for item in commands:
            producer.produce(
                topics["LEDGER_COMMANDS_TOPIC"], key=item.partition_key, value=records.encode(item)
            )
            producer.poll(0)
        assert producer.flush(30) == 0

        def posted() -> int:
            return count(
                stack["DATABASE_URL"],
                "SELECT count(*) FROM transactions WHERE description = %s",
                (tag,),
            )

        wait_until(lambda: posted() >= COMMANDS // 3, 120, "a third posted", first, first_log)
        assert "consuming" not in second_log.read_text(), "the standby must not consume"
        stop(first, signal.SIGKILL)
        wait_until(lambda: posted() == COMMANDS, 180, "the rest posted", second, second_log)
        assert "taking over" in second_log.read_text()
    finally:
        stop(first, signal.SIGKILL)
        if second is not None:
            stop(second)

    ids = [item.transaction_id for item in commands]
    entries = conn.execute(
        "SELECT count(*), count(DISTINCT transaction_id) FROM ledger_entries"
        " WHERE transaction_id = ANY(%s)",
        (ids,),
    ).fetchone()
    assert entries == (2 * COMMANDS, COMMANDS)  # each posted once
    expected = dict.fromkeys(wallets, Decimal(100000))
    for item in commands:
        expected[item.source_wallet_id] -= item.amount
        expected[item.destination_wallet_id] += item.amount
    balances = dict(
        conn.execute(
            "SELECT wallet_id, available_balance FROM wallet_balances WHERE wallet_id = ANY(%s)",
            (wallets,),
        ).fetchall()
    )
    assert balances == expected
    books_balance(stack["DATABASE_URL"])

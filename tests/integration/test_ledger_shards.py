"""The ledger over N = 2 shards on real PostgreSQL: two shard databases beside the
directory (the stack's database, where users and wallets are created as the API does).

Each shard's writer gets every message, as from its own consumer group, and keeps its own:
a same-shard transfer posts on one shard; a cross-shard transfer debits the payer on its
shard into that shard's clearing account, and the CreditFromShard its outbox holds (what the
relay publishes) credits the payee on the other shard. ``verify_shards`` checks each shard
and both together, in flight and settled; a planted corruption fails its own shard only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer

from domain import records
from domain.shards import ShardMap, clearing_wallet_id
from domain.transactions import TransactionType
from infra.migrate import apply_migrations
from ledger_writer import store
from ledger_writer.kafka_io import producer_config
from ledger_writer.settings import LedgerSettings
from ledger_writer.verify_shards import verify_shards
from ledger_writer.writer import LedgerWriter
from tests.integration.test_ledger_writer import Message, command

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SHARDS = ShardMap(2)
TRANSFER = TransactionType.TRANSFER
DEPOSIT = TransactionType.DEPOSIT
BALANCE = "every wallet balance equals the sum of its entries"
SYSTEM = "every system account equals the sum of its entries"


@pytest.fixture()
def shard_urls(stack: dict) -> Iterator[list[str]]:
    """Two fresh shard databases (dropped afterwards: planted corruption stays here)."""
    admin_url = stack["DATABASE_URL"]
    names = [f"shardtest_{uuid.uuid4().hex[:10]}_{i}" for i in range(2)]
    urls = [admin_url.rsplit("/", 1)[0] + f"/{name}" for name in names]
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for name in names:
                admin.execute(f"CREATE DATABASE {name}")
        for url in urls:
            apply_migrations(url)
        yield urls
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for name in names:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Shards:
    """Both shards' writers and connections, and the directory connection."""

    def __init__(self, stack: dict, urls: list[str]) -> None:
        self.urls = urls
        self.directory = psycopg.connect(stack["DATABASE_URL"], autocommit=True)
        self.conns = [psycopg.connect(url, autocommit=True) for url in urls]
        group = f"shards-{uuid.uuid4().hex[:8]}"
        self.writers = [
            LedgerWriter(
                LedgerSettings(
                    DATABASE_URL=stack["DATABASE_URL"],
                    KAFKA_BOOTSTRAP=stack["KAFKA_BOOTSTRAP"],
                    LEDGER_DATABASE_URLS=",".join(urls),
                    shard=i,
                    consumer_group=group,
                )
            )
            for i in range(2)
        ]
        now = datetime.now(UTC)
        for i, conn in enumerate(self.conns):
            store.ensure_system_accounts(conn, now, i, SHARDS.peers(i))
        self.offset = 0
        self.producer = Producer(producer_config(stack["KAFKA_BOOTSTRAP"]))

    def close(self) -> None:
        for conn in [self.directory, *self.conns]:
            conn.close()

    def send(self, *commands: records.Record, topic: str = "ledger.commands") -> None:
        """Every writer sees every message (each shard has its own consumer group)."""
        batch = []
        for record in commands:
            batch.append(Message(topic, 0, self.offset, records.encode(record)))
            self.offset += 1
        for writer, conn in zip(self.writers, self.conns, strict=True):
            writer.process(conn, self.producer, batch, directory=self.directory)

    def relay_shard_credits(self, shard: int) -> list[bytes]:
        """What shard ``shard``'s outbox relay would publish on ledger.shard-credits."""
        rows = (
            self.conns[shard]
            .execute(
                "SELECT payload FROM outbox WHERE topic = 'ledger.shard-credits' AND published_at"
                " IS NULL ORDER BY outbox_id"
            )
            .fetchall()
        )
        self.conns[shard].execute(
            "UPDATE outbox SET published_at = now() WHERE topic = 'ledger.shard-credits'"
        )
        return [bytes(p) for (p,) in rows]

    def deliver(self, payloads: list[bytes]) -> None:
        batch = []
        for payload in payloads:
            batch.append(Message("ledger.shard-credits", 0, self.offset, payload))
            self.offset += 1
        for writer, conn in zip(self.writers, self.conns, strict=True):
            writer.process(conn, self.producer, batch, directory=self.directory)

    def balance(self, shard: int, wallet_id: uuid.UUID) -> Decimal | None:
        row = (
            self.conns[shard]
            .execute(
                "SELECT available_balance FROM wallet_balances WHERE wallet_id = %s", (wallet_id,)
            )
            .fetchone()
        )
        return None if row is None else row[0]

    def status(self, shard: int, transaction_id: uuid.UUID) -> str | None:
        row = (
            self.conns[shard]
            .execute(
                "SELECT transaction_status FROM transactions WHERE transaction_id = %s",
                (transaction_id,),
            )
            .fetchone()
        )
        return None if row is None else row[0]

    def events(self, shard: int, transaction_id: uuid.UUID) -> list[str]:
        rows = (
            self.conns[shard]
            .execute("SELECT payload FROM outbox WHERE topic = 'ledger.events' ORDER BY outbox_id")
            .fetchall()
        )
        kinds = []
        for (payload,) in rows:
            event = records.decode_ledger_event(bytes(payload))
            if event.transaction_id == transaction_id:
                kinds.append(event.kind)
        return kinds


@pytest.fixture()
def shards(stack: dict, shard_urls: list[str]) -> Iterator[Shards]:
    both = Shards(stack, shard_urls)
    try:
        yield both
    finally:
        both.close()


def user_wallet(directory: psycopg.Connection, shard: int) -> uuid.UUID:
    """A user whose bucket lies on ``shard``, with a USD wallet, written as the API does."""
    user_id = uuid.uuid4()
    while SHARDS.shard_of_user(user_id) != shard:
        user_id = uuid.uuid4()
    wallet_id, now = uuid.uuid4(), datetime.now(UTC)
    directory.execute(
        """INSERT INTO users (user_id, email, phone_number, password_hash, salt, first_name,
               last_name, date_of_birth, status, kyc_status, created_at, updated_at)
           VALUES (%s, %s, %s, 'x', 'x', 'T', 'U', '1990-01-01', 'ACTIVE', 'PENDING', %s, %s)""",
        (user_id, f"{user_id}@t.example", f"+{user_id.int % 10**14}", now, now),
    )
    directory.execute(
        """INSERT INTO wallets (wallet_id, user_id, wallet_type, currency_code, status,
               created_at, updated_at) VALUES (%s, %s, 'PRIMARY', 'USD', 'ACTIVE', %s, %s)""",
        (wallet_id, user_id, now, now),
    )
    directory.execute(
        "INSERT INTO wallet_balances (balance_id, wallet_id, last_updated_at) VALUES (%s, %s, %s)",
        (uuid.uuid4(), wallet_id, now),
    )
    return wallet_id


def test_same_shard_and_cross_shard_transfers(shards: Shards) -> None:
    ann, bob = user_wallet(shards.directory, 0), user_wallet(shards.directory, 0)
    cat = user_wallet(shards.directory, 1)
    shards.send(command(DEPOSIT, None, ann, "100"), command(DEPOSIT, None, cat, "50"))
    assert shards.balance(0, ann) == Decimal("100")
    assert shards.balance(1, cat) == Decimal("50")
    assert shards.balance(1, ann) is None and shards.balance(0, cat) is None
    assert shards.writers[0].totals["other_shards"] == 1  # cat's deposit is shard 1's

    same = command(TRANSFER, ann, bob, "30")
    cross = command(TRANSFER, ann, cat, "20", fee="1")
    back = command(TRANSFER, cat, bob, "5")
    shards.send(same, cross, back)
    assert shards.balance(0, ann) == Decimal("49")  # 100 - 30 - 21
    assert shards.balance(0, bob) == Decimal("30")  # cat's 5 has not arrived
    assert shards.balance(1, cat) == Decimal("45")  # ann's 20 has not arrived
    assert shards.status(0, same.transaction_id) == "COMPLETED"
    assert shards.status(1, same.transaction_id) is None
    assert shards.status(0, cross.transaction_id) == "COMPLETED"  # the payer's half
    assert shards.status(1, cross.transaction_id) is None
    # The transaction completes on the payee's shard: no TransactionPosted from the payer's.
    assert shards.events(0, cross.transaction_id) == []
    assert shards.events(0, same.transaction_id) == ["TransactionPosted"]

    # In flight: each shard balances on its own; the pair's clearing accounts hold it.
    report = verify_shards(shards.urls)
    assert report.passed, report
    flying = {(f.from_shard, f.to_shard): (f.count, f.amount) for f in report.in_flight}
    assert flying == {(0, 1): (1, Decimal("20")), (1, 0): (1, Decimal("5"))}

    credits_0, credits_1 = shards.relay_shard_credits(0), shards.relay_shard_credits(1)
    assert len(credits_0) == 1 and len(credits_1) == 1
    shards.deliver(credits_0 + credits_1)
    shards.deliver(credits_0)  # redelivered after a crash of the relay: posts nothing twice
    assert shards.balance(1, cat) == Decimal("65")
    assert shards.balance(0, bob) == Decimal("35")
    assert shards.status(1, cross.transaction_id) == "COMPLETED"
    assert shards.events(1, cross.transaction_id) == ["TransactionPosted"]
    assert shards.events(0, back.transaction_id) == ["TransactionPosted"]
    assert shards.writers[1].totals["duplicates"] == 1

    report = verify_shards(shards.urls)
    assert report.passed, report
    assert report.in_flight == []
    clearing = [
        shards.conns[s]
        .execute(
            "SELECT balance FROM system_balances WHERE wallet_id = %s",
            (clearing_wallet_id(s, 1 - s, "USD"),),
        )
        .fetchone()[0]
        for s in (0, 1)
    ]
    assert clearing == [Decimal("15"), Decimal("-15")]  # 20 out, 5 in; nets to zero


def test_cross_shard_credit_to_a_missing_wallet_stays_in_flight(shards: Shards) -> None:
    ann, cat = user_wallet(shards.directory, 0), user_wallet(shards.directory, 1)
    shards.send(command(DEPOSIT, None, ann, "10"))
    cross = command(TRANSFER, ann, cat, "4")
    shards.send(cross)
    payloads = shards.relay_shard_credits(0)
    # The wallet disappears from the directory before shard 1 ever copied it.
    shards.directory.execute("DELETE FROM wallet_balances WHERE wallet_id = %s", (cat,))
    shards.directory.execute("DELETE FROM wallets WHERE wallet_id = %s", (cat,))
    shards.deliver(payloads)
    assert shards.writers[1].totals["dead_letters"] == 1
    assert shards.status(1, cross.transaction_id) is None
    report = verify_shards(shards.urls)
    assert report.passed  # nothing is lost: it is reported in flight
    assert [(f.from_shard, f.to_shard, f.amount) for f in report.in_flight] == [
        (0, 1, Decimal("4"))
    ]


def test_planted_corruption_fails_its_own_shard(shards: Shards, stack_dir: Path) -> None:
    ann, cat = user_wallet(shards.directory, 0), user_wallet(shards.directory, 1)
    shards.send(command(DEPOSIT, None, ann, "10"), command(DEPOSIT, None, cat, "10"))
    shards.send(command(TRANSFER, ann, cat, "3"))
    shards.deliver(shards.relay_shard_credits(0))
    assert verify_shards(shards.urls).passed

    shards.conns[1].execute(
        "UPDATE wallet_balances SET available_balance = available_balance + 1 WHERE wallet_id = %s",
        (cat,),
    )
    report = verify_shards(shards.urls)
    assert all(r.passed for r in report.shards[0])
    assert {r.name for r in report.shards[1] if not r.passed} >= {BALANCE}

    # A clearing account moved by hand: its shard's check fails, and the pair no longer
    # nets to what is in flight.
    shards.conns[0].execute(
        "UPDATE system_balances SET balance = balance + 2 WHERE wallet_id = %s",
        (clearing_wallet_id(0, 1, "USD"),),
    )
    report = verify_shards(shards.urls)
    assert SYSTEM in {r.name for r in report.shards[0] if not r.passed}
    overall = {r.name: r for r in report.overall}
    assert not overall["each shard pair's clearing accounts net to what is in flight"].passed

    cli = subprocess.run(
        [sys.executable, "-m", "walletpipe.cli", "ledger", "verify"],
        env={
            **os.environ,
            "WALLETPIPE_LOCAL_DIR": str(stack_dir),
            "LEDGER_DATABASE_URLS": ",".join(shards.urls),
        },
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "shard 1:" in cli.stdout and f"FAIL {BALANCE}" in cli.stdout
    assert "across 2 shards:" in cli.stdout


def test_wallet_status_is_the_directorys_even_after_the_copy(shards: Shards) -> None:
    ann, cat = user_wallet(shards.directory, 0), user_wallet(shards.directory, 1)
    shards.send(command(DEPOSIT, None, ann, "10"), command(DEPOSIT, None, cat, "10"))
    shards.send(command(TRANSFER, ann, cat, "1"))  # both shards have copied both wallets now
    shards.deliver(shards.relay_shard_credits(0))
    for wallet in (ann, cat):
        shards.directory.execute(
            "UPDATE wallets SET status = 'SUSPENDED' WHERE wallet_id = %s", (wallet,)
        )
    to_suspended = command(TRANSFER, ann, cat, "2")
    from_suspended = command(TRANSFER, cat, ann, "2")
    shards.send(to_suspended, from_suspended)
    assert shards.status(0, to_suspended.transaction_id) == "FAILED"
    assert shards.status(1, from_suspended.transaction_id) == "FAILED"
    assert shards.relay_shard_credits(0) == [] and shards.relay_shard_credits(1) == []
    assert shards.balance(0, ann) == Decimal("9") and shards.balance(1, cat) == Decimal("11")
    assert verify_shards(shards.urls).passed


def test_a_shard_credit_the_ledger_cannot_store_is_dead_lettered_alone(shards: Shards) -> None:
    """A CreditFromShard holding a NUL (from an older or foreign writer): the payer's shard
    has already moved the money, so the payee's shard cannot fail the transaction; the
    credit goes to the dead-letter topic (its amount stays in flight, which verify reports)
    and the other credits of the batch post."""
    ann, cat = user_wallet(shards.directory, 0), user_wallet(shards.directory, 1)
    shards.send(command(DEPOSIT, None, ann, "10"))
    first, second = command(TRANSFER, ann, cat, "3"), command(TRANSFER, ann, cat, "4")
    shards.send(first, second)
    credits = shards.relay_shard_credits(0)
    tampered = json.loads(credits[0])
    tampered["description"] = "note\x00"
    shards.deliver([json.dumps(tampered).encode(), credits[1]])
    assert shards.writers[1].totals["dead_letters"] == 1
    assert shards.status(1, first.transaction_id) is None
    assert shards.status(1, second.transaction_id) == "COMPLETED"
    assert shards.balance(1, cat) == Decimal("4")
    report = verify_shards(shards.urls)
    assert report.passed, report
    assert [(f.from_shard, f.to_shard, f.amount) for f in report.in_flight] == [
        (0, 1, Decimal("3"))
    ]

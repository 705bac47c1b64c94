"""The ledger writer's batch against real PostgreSQL (and real Kafka for dead letters).

Messages are handed to ``LedgerWriter.process`` directly, so each test controls exactly what
a batch holds; the full consume loop runs in the end-to-end suite.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from confluent_kafka import Producer

from domain import records
from domain.exceptions import LedgerInvariantError
from domain.transactions import TransactionType
from ledger_writer import planning, store
from ledger_writer.settings import LedgerSettings
from ledger_writer.verify import verify
from ledger_writer.writer import LedgerWriter

pytestmark = pytest.mark.integration


@dataclass
class Message:
    """The slice of confluent_kafka.Message the writer reads."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes
    _key: bytes = b"k"

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def error(self) -> None:
        return None


@pytest.fixture()
def writer(stack: dict) -> LedgerWriter:
    settings = LedgerSettings(
        DATABASE_URL=stack["DATABASE_URL"],
        KAFKA_BOOTSTRAP=stack["KAFKA_BOOTSTRAP"],
        consumer_group=f"test-{uuid.uuid4().hex[:8]}",
    )
    return LedgerWriter(settings)


@pytest.fixture()
def conn(stack: dict):
    with psycopg.connect(stack["DATABASE_URL"], autocommit=True) as connection:
        store.ensure_system_accounts(connection, datetime.now(UTC))
        yield connection


def wallet(
    conn: psycopg.Connection, available: str = "0", currency: str = "USD", status: str = "ACTIVE"
) -> uuid.UUID:
    user_id, wallet_id, now = uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    conn.execute(
        """INSERT INTO users (user_id, email, phone_number, password_hash, salt,
                        first_name, last_name, date_of_birth, status, kyc_status, created_at,
                        updated_at) VALUES (%s, %s, %s, 'x', 'x', 'T', 'U', '1990-01-01',
                        'ACTIVE', 'PENDING', %s, %s)""",
        (user_id, f"{user_id}@t.example", f"+{user_id.int % 10**14}", now, now),
    )
    conn.execute(
        """INSERT INTO wallets (wallet_id, user_id, wallet_type, currency_code, status,
                        created_at, updated_at) VALUES (%s, %s, 'PRIMARY', %s, %s, %s, %s)""",
        (wallet_id, user_id, currency, status, now, now),
    )
    conn.execute(
        """INSERT INTO wallet_balances (balance_id, wallet_id, available_balance,
                        last_updated_at) VALUES (%s, %s, 0, %s)""",
        (uuid.uuid4(), wallet_id, now),
    )
    if Decimal(available):
        fund(conn, wallet_id, available)
    return wallet_id


def fund(conn: psycopg.Connection, wallet_id: uuid.UUID, amount: str) -> None:
    """Post a real deposit through the planner and store, so the books stay balanced."""
    LedgerWriter(
        LedgerSettings(DATABASE_URL="x", KAFKA_BOOTSTRAP="x", consumer_group="test-funding")
    ).process(
        conn,
        None,
        [
            Message(
                "ledger.commands",
                0,
                0,
                records.encode(command(TransactionType.DEPOSIT, None, wallet_id, amount)),
            )
        ],
    )


def command(
    kind: TransactionType,
    source: uuid.UUID | None,
    destination: uuid.UUID | None,
    amount: str,
    fee: str = "0",
) -> records.PostTransaction:
    return records.PostTransaction(
        transaction_id=uuid.uuid4(),
        transaction_type=kind,
        source_wallet_id=source,
        destination_wallet_id=destination,
        amount=Decimal(amount),
        fee_amount=Decimal(fee),
        total_amount=Decimal(amount) + Decimal(fee),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key=str(uuid.uuid4()),
        requested_at=records.utc_now(),
        decided_at=records.utc_now(),
    )


def available(conn: psycopg.Connection, wallet_id: uuid.UUID) -> Decimal:
    row = conn.execute(
        "SELECT available_balance FROM wallet_balances WHERE wallet_id = %s", (wallet_id,)
    ).fetchone()
    return row[0]


def test_batch_posts_balanced_entries_and_stores_offsets(writer, conn) -> None:
    alice, bob = wallet(conn, "100"), wallet(conn)
    transfer = command(TransactionType.TRANSFER, alice, bob, "40", fee="0.50")
    too_much = command(TransactionType.PAYMENT, alice, None, "1000")
    batch = [
        Message("ledger.commands", 3, 17, records.encode(transfer)),
        Message("ledger.commands", 3, 18, records.encode(too_much)),
    ]
    writer.process(conn, None, batch)

    assert available(conn, alice) == Decimal("59.5")
    assert available(conn, bob) == Decimal("40")
    entries = conn.execute(
        """SELECT wallet_id, entry_type, amount, balance_after
                                FROM ledger_entries WHERE transaction_id = %s""",
        (transfer.transaction_id,),
    ).fetchall()
    assert {(w, t, a) for w, t, a, _ in entries} >= {
        (alice, "DEBIT", Decimal("40.5")),
        (bob, "CREDIT", Decimal("40")),
    }
    assert {w: after for w, _t, _a, after in entries}[alice] == Decimal("59.5")
    status = dict(
        conn.execute(
            "SELECT transaction_id, transaction_status FROM transactions"
            " WHERE transaction_id = ANY(%s)",
            ([transfer.transaction_id, too_much.transaction_id],),
        ).fetchall()
    )
    assert status == {transfer.transaction_id: "COMPLETED", too_much.transaction_id: "FAILED"}
    assert store.load_offsets(conn, writer.settings.consumer_group, "ledger.commands") == {3: 19}
    kinds = [
        bytes(p)
        for (p,) in conn.execute(
            "SELECT payload FROM outbox WHERE message_key = %s ORDER BY outbox_id", (str(alice),)
        ).fetchall()
    ]
    assert any(b'"TransactionPosted"' in k for k in kinds)
    assert any(b'"TransactionFailed"' in k and b"INSUFFICIENT_FUNDS" in k for k in kinds)
    assert all(result.passed for result in verify(writer.settings.database_url))


def test_redelivered_batch_posts_nothing_twice(writer, conn) -> None:
    alice, bob = wallet(conn, "10"), wallet(conn)
    transfer = command(TransactionType.TRANSFER, alice, bob, "10")
    batch = [Message("ledger.commands", 1, 5, records.encode(transfer))]
    writer.process(conn, None, batch)
    writer.process(conn, None, batch)  # as after a crash between commit and offset commit
    assert available(conn, alice) == 0
    assert available(conn, bob) == Decimal("10")
    assert writer.totals["posted"] == 1 and writer.totals["duplicates"] == 1
    count = conn.execute(
        "SELECT count(*) FROM ledger_entries WHERE transaction_id = %s", (transfer.transaction_id,)
    ).fetchone()
    assert count == (2,)


def test_closed_wallet_and_currency_mismatch_fail_with_reasons(writer, conn) -> None:
    closed, euro, target = wallet(conn, "5"), wallet(conn, "0", "EUR"), wallet(conn)
    conn.execute("UPDATE wallets SET status = 'CLOSED' WHERE wallet_id = %s", (closed,))
    from_closed = command(TransactionType.TRANSFER, closed, target, "1")
    to_euro = command(TransactionType.TRANSFER, target, euro, "1")
    writer.process(
        conn,
        None,
        [
            Message("ledger.commands", 0, 1, records.encode(from_closed)),
            Message("ledger.commands", 0, 2, records.encode(to_euro)),
        ],
    )
    codes = dict(
        conn.execute(
            """SELECT transaction_id, error_code FROM transaction_events
            WHERE event_type = 'FAILED' AND transaction_id = ANY(%s)""",
            ([from_closed.transaction_id, to_euro.transaction_id],),
        ).fetchall()
    )
    assert codes == {
        from_closed.transaction_id: "WALLET_NOT_ACTIVE",
        to_euro.transaction_id: "CURRENCY_MISMATCH",
    }
    assert available(conn, closed) == Decimal("5")


def test_undecodable_command_goes_to_dead_letter_and_offset_moves_on(writer, conn, stack) -> None:
    producer = Producer({"bootstrap.servers": stack["KAFKA_BOOTSTRAP"]})
    writer.process(conn, producer, [Message("ledger.commands", 2, 41, b"not json")])
    assert writer.totals["dead_letters"] == 1
    assert store.load_offsets(conn, writer.settings.consumer_group, "ledger.commands") == {2: 42}


def test_unknown_wallet_is_dead_lettered_and_the_batch_still_posts(writer, conn, stack) -> None:
    alice, bob = wallet(conn, "10"), wallet(conn)
    ghost = command(TransactionType.TRANSFER, uuid.uuid4(), bob, "1")
    good = command(TransactionType.TRANSFER, alice, bob, "4")
    producer = Producer({"bootstrap.servers": stack["KAFKA_BOOTSTRAP"]})
    writer.process(
        conn,
        producer,
        [
            Message("ledger.commands", 4, 7, records.encode(ghost)),
            Message("ledger.commands", 4, 8, records.encode(good)),
        ],
    )
    assert writer.totals["dead_letters"] == 1 and writer.totals["posted"] == 1
    assert available(conn, bob) == 4
    rows = conn.execute(
        "SELECT count(*) FROM transactions WHERE transaction_id = %s", (ghost.transaction_id,)
    ).fetchone()
    assert rows == (0,)
    assert store.load_offsets(conn, writer.settings.consumer_group, "ledger.commands") == {4: 9}


def test_rows_naming_a_missing_wallet_or_transaction_roll_the_batch_back(conn) -> None:
    """The writer checks its rows' foreign keys once per batch (ledger_writer/references.py)
    instead of by PostgreSQL's per-row triggers: a plan that names a wallet or a transaction
    that does not exist must still fail before anything of it is committed."""
    payer, payee = wallet(conn, "50"), wallet(conn)
    now = datetime.now(UTC)
    good = planning.plan_batch(
        [command(TransactionType.TRANSFER, payer, payee, "5")],
        {},
        store.load_accounts(conn, [payer, payee]),
        now,
    )
    ghost_wallet, ghost_transaction = uuid.uuid4(), uuid.uuid4()
    broken_entries = [
        (e[0], e[1], ghost_wallet if e[2] == payee else e[2], *e[3:]) for e in good.entries
    ]
    broken_events = [*good.events, (uuid.uuid4(), ghost_transaction, *good.events[0][2:])]
    for plan in (
        replace(good, entries=broken_entries),
        replace(good, events=broken_events),
    ):
        with pytest.raises((LedgerInvariantError, psycopg.errors.ForeignKeyViolation)):
            store.write_plan(conn, plan, {}, "test-references", "ledger.events", now)
        [transaction_id] = [row[0] for row in plan.transactions]
        stored = conn.execute(
            "SELECT count(*) FROM transactions WHERE transaction_id = %s", (transaction_id,)
        ).fetchone()
        assert stored == (0,)
        assert available(conn, payer) == Decimal("50")
    store.write_plan(conn, good, {}, "test-references", "ledger.events", now)
    assert available(conn, payer) == Decimal("45")
    assert all(result.passed for result in verify(conn.info.dsn)), "the books still balance"

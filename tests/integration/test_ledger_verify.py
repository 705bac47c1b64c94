"""``ledger verify`` on real PostgreSQL: clean books pass every check; each planted corruption
is caught by the check that names it, and ``walletpipe ledger verify`` exits non-zero.

Runs in a database of its own (created and dropped here), so planted corruption never
reaches the shared test database other tests verify.
"""

from __future__ import annotations

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

from domain import records
from domain.transactions import TransactionType
from infra.migrate import apply_migrations
from ledger_writer import store
from ledger_writer.settings import LedgerSettings
from ledger_writer.verify import CHAIN_CHECK, verify
from ledger_writer.writer import LedgerWriter
from tests.integration.test_ledger_writer import Message, command, wallet

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CHAIN_MIGRATION = REPO / "infra" / "migrations" / "0032_ledger_chain.sql"

SUM_ZERO = "every transaction's entries sum to zero"
BALANCE = "every wallet balance equals the sum of its entries"
EVENTS = "every transaction's event chain fits its status"
RESERVED = "every wallet's reserved balance equals the sum of its open holds"
REVERSALS = "no reversal exceeds its original, and only fully reversed ones are REVERSED"


@pytest.fixture()
def ledger_db(stack: dict) -> Iterator[str]:
    name = f"verify_{uuid.uuid4().hex[:12]}"
    admin_url = stack["DATABASE_URL"]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def failing(url: str) -> set[str]:
    return {result.name for result in verify(url) if not result.passed}


def build_books(conn: psycopg.Connection, writer: LedgerWriter) -> dict[str, uuid.UUID]:
    """Every kind of posting: deposit, transfer, a captured and a pending payment, a reversal."""
    store.ensure_system_accounts(conn, datetime.now(UTC))
    alice, bob = wallet(conn, "100"), wallet(conn)
    transfer = command(TransactionType.TRANSFER, alice, bob, "30")
    captured = command(TransactionType.PAYMENT, alice, None, "20", fee="0.20")
    pending = command(TransactionType.PAYMENT, alice, None, "5")
    writer.process(
        conn,
        None,
        [
            Message("ledger.commands", 0, 1, records.encode(transfer)),
            Message("ledger.commands", 0, 2, records.encode(captured)),
            Message("ledger.commands", 0, 3, records.encode(pending)),
        ],
    )
    capture = records.GatewayResponded(
        transaction_id=captured.transaction_id,
        wallet_id=alice,
        outcome="CAPTURED",
        captured_amount=Decimal("15"),
        responded_at=records.utc_now(),
    )
    refund = command(TransactionType.TRANSFER, bob, alice, "10").model_copy(
        update={"metadata": {"reversal_of": str(transfer.transaction_id)}}
    )
    writer.process(
        conn,
        None,
        [
            Message("gateway.results", 0, 1, records.encode(capture)),
            Message("ledger.commands", 0, 4, records.encode(refund)),
        ],
    )
    return {
        "alice": alice,
        "bob": bob,
        "transfer": transfer.transaction_id,
        "captured": captured.transaction_id,
        "pending": pending.transaction_id,
        "refund": refund.transaction_id,
    }


def test_verify_names_each_planted_corruption(ledger_db: str, stack: dict, stack_dir: Path) -> None:
    writer = LedgerWriter(
        LedgerSettings(
            DATABASE_URL=ledger_db, KAFKA_BOOTSTRAP=stack["KAFKA_BOOTSTRAP"], consumer_group="v"
        )
    )
    with psycopg.connect(ledger_db, autocommit=True) as conn:
        ids = build_books(conn, writer)
        status = dict(conn.execute("SELECT transaction_id, transaction_status FROM transactions"))
        assert status[ids["captured"]] == "COMPLETED" and status[ids["pending"]] == "PENDING"
        assert status[ids["refund"]] == "COMPLETED"
        assert failing(ledger_db) == set()

        def planted(sql: str, undo: str, params: tuple = ()) -> set[str]:
            conn.execute(sql, params)
            try:
                return failing(ledger_db)
            finally:
                conn.execute(undo, params)
                assert failing(ledger_db) == set()

        entry = (ids["transfer"],)
        bump = "UPDATE ledger_entries SET amount = amount + %s WHERE transaction_id = %s"
        bumped = planted(
            bump.replace("%s WHERE", "1 WHERE", 1) + " AND entry_type = 'CREDIT'",
            bump.replace("%s WHERE", "-1 WHERE", 1) + " AND entry_type = 'CREDIT'",
            entry,
        )
        assert {SUM_ZERO, CHAIN_CHECK} <= bumped
        assert planted(
            "UPDATE ledger_entries SET prev_hash = sha256(prev_hash) WHERE chain_seq = 2",
            "UPDATE ledger_entries SET prev_hash = (SELECT entry_hash FROM ledger_entries"
            " WHERE chain_seq = 1) WHERE chain_seq = 2",
        ) == {CHAIN_CHECK}
        assert planted(
            "UPDATE wallet_balances SET available_balance = available_balance - 1,"
            " reserved_balance = reserved_balance + 1 WHERE wallet_id = %s",
            "UPDATE wallet_balances SET available_balance = available_balance + 1,"
            " reserved_balance = reserved_balance - 1 WHERE wallet_id = %s",
            (ids["alice"],),
        ) == {RESERVED}
        [(settled,)] = conn.execute(
            "SELECT event_id FROM transaction_events WHERE transaction_id = %s"
            " AND event_type = 'SETTLED'",
            (ids["refund"],),
        ).fetchall()
        assert planted(
            "UPDATE transaction_events SET event_type = 'AUTHORIZED' WHERE event_id = %s",
            "UPDATE transaction_events SET event_type = 'SETTLED' WHERE event_id = %s",
            (settled,),
        ) == {EVENTS}
        assert planted(
            "UPDATE transactions SET transaction_status = 'REVERSED' WHERE transaction_id = %s",
            "UPDATE transactions SET transaction_status = 'COMPLETED' WHERE transaction_id = %s",
            (ids["transfer"],),
        ) == {REVERSALS}
        assert BALANCE in planted(
            "UPDATE wallet_balances SET available_balance = available_balance + 5"
            " WHERE wallet_id = %s",
            "UPDATE wallet_balances SET available_balance = available_balance - 5"
            " WHERE wallet_id = %s",
            (ids["bob"],),
        )

        # The CLI names the broken check and exits non-zero.
        conn.execute("UPDATE ledger_entries SET amount = amount + 1 WHERE chain_seq = 3")
        cli = subprocess.run(
            [sys.executable, "-m", "walletpipe.cli", "ledger", "verify"],
            env={**os.environ, "DATABASE_URL": ledger_db, "WALLETPIPE_LOCAL_DIR": str(stack_dir)},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 1, cli.stdout + cli.stderr
        assert f"FAIL {CHAIN_CHECK}" in cli.stdout
        assert "does not match its hash" in cli.stdout


def test_migration_backfill_hashes_like_the_writer(ledger_db: str, stack: dict) -> None:
    """Entries written before the chain existed are linked by the migration's SQL; the
    writer links in Python. Both must agree, or verify would fail after an upgrade."""
    writer = LedgerWriter(
        LedgerSettings(
            DATABASE_URL=ledger_db, KAFKA_BOOTSTRAP=stack["KAFKA_BOOTSTRAP"], consumer_group="v"
        )
    )
    with psycopg.connect(ledger_db, autocommit=True) as conn:
        build_books(conn, writer)
        written = conn.execute(
            "SELECT entry_id, chain_seq, entry_hash FROM ledger_entries ORDER BY chain_seq"
        ).fetchall()
        backfill = CHAIN_MIGRATION.read_text()
        backfill = backfill[backfill.index("DO $$") :]
        conn.execute(
            "UPDATE ledger_entries SET chain_seq = NULL, prev_hash = NULL, entry_hash = NULL"
        )
        conn.execute(backfill)  # type: ignore[arg-type]
        relinked = conn.execute(
            "SELECT entry_id, chain_seq, entry_hash FROM ledger_entries ORDER BY chain_seq"
        ).fetchall()
    assert len(relinked) == len(written) > 0
    assert failing(ledger_db) == set()
    same_order = [r[0] for r in relinked] == [w[0] for w in written]
    if same_order:  # entries of one batch share created_at, so order may differ; hashes then too
        assert relinked == written

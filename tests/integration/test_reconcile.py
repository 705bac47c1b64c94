"""``ledger reconcile`` on real PostgreSQL: requests the ledger wrote (posted, refused, and
rejected by the stream) end once; a request without an outcome is in flight until its
deadline and stuck after it; a second terminal event is a duplicate; an outcome after the
deadline is late; and ``walletpipe ledger reconcile`` names them and exits non-zero.

Runs in a database of its own, like test_ledger_verify, so hand-made requests without an
outcome never reach the shared test database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from domain import records
from domain.transactions import TransactionType
from ledger_writer import store
from ledger_writer.outcomes import Verdict
from ledger_writer.reconcile import reconcile
from ledger_writer.settings import LedgerSettings
from ledger_writer.writer import LedgerWriter
from tests.integration.test_ledger_verify import ledger_db  # noqa: F401 - a fixture
from tests.integration.test_ledger_writer import Message, command, wallet

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DEADLINE = timedelta(seconds=60)


def accept(conn: psycopg.Connection, client: uuid.UUID, transaction_id: uuid.UUID, at: datetime):  # noqa: ANN201
    conn.execute(
        """INSERT INTO transaction_requests (transaction_id, client_id, idempotency_key,
               request_hash, record, published_at, created_at)
           VALUES (%s, %s, %s, repeat('0', 64), %s, %s, %s)""",
        (transaction_id, client, str(transaction_id), Jsonb({}), at, at),
    )


def rejected(source: uuid.UUID, destination: uuid.UUID) -> records.TransactionRejected:
    facts = command(TransactionType.TRANSFER, source, destination, "5").model_dump()
    facts.pop("kind")
    facts.pop("expires_at")  # a command's deadline; a rejection has none
    return records.TransactionRejected(
        **facts, reason_code="LIMIT_EXCEEDED", reason_message="over the daily limit"
    )


def test_every_verdict_is_found_and_named(
    ledger_db: str,  # noqa: F811 - the fixture imported above
    stack: dict,
    stack_dir: Path,
) -> None:
    writer = LedgerWriter(
        LedgerSettings(DATABASE_URL=ledger_db, KAFKA_BOOTSTRAP=stack["KAFKA_BOOTSTRAP"])
    )
    now = datetime.now(UTC)
    with psycopg.connect(ledger_db, autocommit=True) as conn:
        store.ensure_system_accounts(conn, now)
        client = uuid.uuid4()
        conn.execute(
            "INSERT INTO api_clients (client_id, name, created_at) VALUES (%s, %s, now())",
            (client, f"c-{client.hex[:8]}"),
        )
        alice, bob = wallet(conn, "100"), wallet(conn)
        posted = command(TransactionType.TRANSFER, alice, bob, "30")
        refused = command(TransactionType.TRANSFER, bob, alice, "500")  # more than bob has
        declined = rejected(alice, bob)  # the stream's rejection: an outcome like any other
        doubled = command(TransactionType.TRANSFER, alice, bob, "1")
        writer.process(
            conn,
            None,
            [
                Message("ledger.commands", 0, 1, records.encode(posted)),
                Message("ledger.commands", 0, 2, records.encode(refused)),
                Message("transactions.rejected", 0, 1, records.encode(declined)),
                Message("ledger.commands", 0, 3, records.encode(doubled)),
            ],
        )
        for ended in (posted, refused, declined, doubled):
            accept(conn, client, ended.transaction_id, now - timedelta(seconds=5))
        # A second terminal event for one transaction: two outcomes.
        conn.execute(
            """INSERT INTO transaction_events (event_id, transaction_id, event_type,
                   event_status, created_at) VALUES (%s, %s, 'FAILED', 'FAILURE', %s)""",
            (uuid.uuid4(), doubled.transaction_id, now),
        )
        stuck, in_flight = uuid.uuid4(), uuid.uuid4()
        accept(conn, client, stuck, now - timedelta(seconds=600))
        accept(conn, client, in_flight, now - timedelta(seconds=1))
        late = command(TransactionType.TRANSFER, alice, bob, "2")
        writer.process(conn, None, [Message("ledger.commands", 0, 4, records.encode(late))])
        accept(conn, client, late.transaction_id, now - timedelta(seconds=120))

    report = reconcile(ledger_db, deadline=DEADLINE)
    counts = {v: n for v, n in report.counts.items() if n}
    assert counts == {
        Verdict.ENDED: 3,
        Verdict.DUPLICATED: 1,
        Verdict.STUCK: 1,
        Verdict.IN_FLIGHT: 1,
        Verdict.LATE: 1,
    }
    named = {v: {t for t, _why in report.samples[v]} for v in Verdict}
    assert named[Verdict.STUCK] == {stuck}
    assert named[Verdict.DUPLICATED] == {doubled.transaction_id}
    assert named[Verdict.LATE] == {late.transaction_id}
    assert not report.passed
    since = reconcile(ledger_db, deadline=DEADLINE, since=now - timedelta(seconds=30))
    assert since.accepted == 5 and since.counts[Verdict.STUCK] == 0  # the window only

    cli = subprocess.run(
        [sys.executable, "-m", "walletpipe.cli", "ledger", "reconcile", "--deadline-s", "60"],
        env={**os.environ, "DATABASE_URL": ledger_db, "WALLETPIPE_LOCAL_DIR": str(stack_dir)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert str(stuck) in cli.stdout and str(doubled.transaction_id) in cli.stdout
    assert "FAIL every accepted request has exactly one outcome" in cli.stdout

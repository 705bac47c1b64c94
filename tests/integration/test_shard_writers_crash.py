"""Two shard writers as real processes, killed with -9 mid-stream and restarted: every
transfer, within a shard or across, posts exactly once on each shard it touches, every
shard credit lands once, one TransactionPosted is announced per transfer, and the books
verify per shard and together with nothing left in flight.

The writers run ``python -m ledger_writer.writer`` (LEDGER_SHARD 0 and 1) against two fresh
shard databases and the shared stack's directory, on private topics and consumer groups.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from domain import records
from domain.transactions import TransactionType
from ledger_writer.verify_shards import verify_shards
from tests.helpers import ordered_producer
from tests.integration.test_ledger_shards import SHARDS, shard_urls, user_wallet  # noqa: F401
from tests.integration.test_ledger_writer import command
from tests.integration.test_writer_crash import _create_topics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMMANDS = 3_000
DUPLICATES = 100
WALLETS_PER_SHARD = 10
FUNDS = Decimal(1_000_000)


def _writer(env: dict[str, str], shard: int, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "ledger_writer.writer"],
        env={**env, "LEDGER_SHARD": str(shard)},
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _count(urls: list[str], sql: str, params: tuple) -> list[int]:
    counts = []
    for url in urls:
        with psycopg.connect(url) as conn:
            row = conn.execute(sql, params).fetchone()
            counts.append(int(row[0]) if row else 0)
    return counts


def _rows(urls: list[str], tag: str) -> int:
    return sum(_count(urls, "SELECT count(*) FROM transactions WHERE description = %s", (tag,)))


def _stop(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        os.kill(process.pid, sig)
    process.wait(timeout=30)


def test_kill_9_shard_writers_mid_stream(stack: dict, shard_urls: list[str], tmp_path: Path):  # noqa: F811
    tag = f"shardcrash-{uuid.uuid4().hex[:10]}"
    topics = {f"{tag}.{name}": 8 for name in ("commands", "rejected", "events", "credits")}
    _create_topics(stack["KAFKA_BOOTSTRAP"], topics)
    with psycopg.connect(stack["DATABASE_URL"], autocommit=True) as directory:
        wallets = {s: [user_wallet(directory, s) for _ in range(WALLETS_PER_SHARD)] for s in (0, 1)}
    shard_of = {w: s for s, ws in wallets.items() for w in ws}
    everyone = [*wallets[0], *wallets[1]]
    rng = random.Random(7)
    funding = [
        command(TransactionType.DEPOSIT, None, w, str(FUNDS)).model_copy(
            update={"description": f"{tag}-fund"}
        )
        for w in everyone
    ]
    transfers = []
    for _ in range(COMMANDS):
        source, destination = rng.sample(everyone, 2)
        amount = f"{rng.randint(1, 300)}.{rng.randint(0, 99):02d}"
        item = command(TransactionType.TRANSFER, source, destination, amount)
        transfers.append(item.model_copy(update={"description": tag}))
    crossing = sum(
        1 for t in transfers if shard_of[t.source_wallet_id] != shard_of[t.destination_wallet_id]
    )
    assert 0 < crossing < COMMANDS
    producer = ordered_producer(stack["KAFKA_BOOTSTRAP"], **{"linger.ms": 20})
    for item in funding + transfers + rng.sample(transfers, DUPLICATES):
        producer.produce(f"{tag}.commands", key=item.partition_key, value=records.encode(item))
        producer.poll(0)
    assert producer.flush(30) == 0

    env = {
        **os.environ,
        "DATABASE_URL": stack["DATABASE_URL"],
        "KAFKA_BOOTSTRAP": stack["KAFKA_BOOTSTRAP"],
        "LEDGER_DATABASE_URLS": ",".join(shard_urls),
        "LEDGER_CONSUMER_GROUP": tag,
        "LEDGER_COMMANDS_TOPIC": f"{tag}.commands",
        "LEDGER_REJECTED_TOPIC": f"{tag}.rejected",
        "LEDGER_EVENTS_TOPIC": f"{tag}.events",
        "LEDGER_SHARD_CREDITS_TOPIC": f"{tag}.credits",
        "LEDGER_SESSION_TIMEOUT_MS": "6000",
        "LEDGER_BATCH_SIZE_MAX": "150",  # many small batches: the kills land mid-stream
        "PYTHONUNBUFFERED": "1",
    }
    expected_rows = COMMANDS + crossing  # a crossing transfer has a row on both shards
    logs = [tmp_path / f"writer-{s}.log" for s in (0, 1)]
    writers = [_writer(env, s, logs[s]) for s in (0, 1)]
    try:
        for victim, share in ((1, 1 / 4), (0, 2 / 4), (1, 3 / 4)):
            deadline = time.monotonic() + 180
            while _rows(shard_urls, tag) < expected_rows * share:
                for s, w in enumerate(writers):
                    assert w.poll() is None, logs[s].read_text()[-2000:]
                assert time.monotonic() < deadline, "the writers made no progress"
                time.sleep(0.02)
            _stop(writers[victim], signal.SIGKILL)
            writers[victim] = _writer(env, victim, logs[victim])
        assert _rows(shard_urls, tag) < expected_rows, "the backlog was done before the kills"
        deadline = time.monotonic() + 240
        while _rows(shard_urls, tag) < expected_rows or _unrelayed(shard_urls, tag):
            for s, w in enumerate(writers):
                assert w.poll() is None, logs[s].read_text()[-2000:]
            assert _failed(shard_urls, tag) == [], "every wallet is funded before it pays"
            assert time.monotonic() < deadline, f"{_rows(shard_urls, tag)} of {expected_rows}"
            time.sleep(0.1)
        # The replays sit at the end of the commands topic: wait until both have read them.
        deadline = time.monotonic() + 60
        while (
            sum(_count(shard_urls, _KIND_SQL, (f"{tag}.events", "DuplicateDiscarded"))) < DUPLICATES
        ):
            assert time.monotonic() < deadline, "replays were not all recognised"
            time.sleep(0.1)
    finally:
        for w in writers:
            _stop(w, signal.SIGTERM)

    ids = [t.transaction_id for t in transfers]
    per_shard = _count(
        shard_urls,
        "SELECT count(*) FROM transactions WHERE transaction_id = ANY(%s)"
        " AND transaction_status = 'COMPLETED'",
        (ids,),
    )
    assert sum(per_shard) == expected_rows
    posted = _count(shard_urls, _KIND_SQL, (f"{tag}.events", "TransactionPosted"))
    assert sum(posted) == COMMANDS + len(funding)  # one announcement per transaction
    assert sum(_count(shard_urls, _KIND_SQL, (f"{tag}.events", "DuplicateDiscarded"))) == DUPLICATES
    assert sum(_count(shard_urls, _KIND_SQL, (f"{tag}.credits", "CreditFromShard"))) == crossing

    expected = {w: FUNDS for w in everyone}
    for t in transfers:
        expected[t.source_wallet_id] -= t.amount
        expected[t.destination_wallet_id] += t.amount
    for s, url in enumerate(shard_urls):
        with psycopg.connect(url) as conn:
            balances = dict(
                conn.execute(
                    "SELECT wallet_id, available_balance FROM wallet_balances"
                    " WHERE wallet_id = ANY(%s)",
                    (everyone,),
                ).fetchall()
            )
        assert balances == {w: expected[w] for w in wallets[s]}
    report = verify_shards(shard_urls)
    failed = [r.name for shard in report.shards for r in shard if not r.passed]
    assert failed == [] and report.passed, report
    assert report.in_flight == []


_KIND_SQL = """SELECT count(*) FROM outbox WHERE topic = %s
                AND convert_from(payload, 'UTF8')::jsonb->>'kind' = %s"""


def _unrelayed(urls: list[str], tag: str) -> int:
    return sum(
        _count(
            urls,
            "SELECT count(*) FROM outbox WHERE topic LIKE %s AND published_at IS NULL",
            (f"{tag}.%",),
        )
    )


def _failed(urls: list[str], tag: str) -> list[tuple]:
    """Transfers the writers refused, with the reason: none is expected, and one would
    otherwise only show as a count that never reaches its target."""
    refused = []
    for url in urls:
        with psycopg.connect(url) as conn:
            refused += conn.execute(
                "SELECT e.error_code, e.error_message FROM transaction_events e"
                " JOIN transactions t USING (transaction_id)"
                " WHERE t.description = %s AND t.transaction_status = 'FAILED'"
                " AND e.event_type = 'FAILED' LIMIT 3",
                (tag,),
            ).fetchall()
    return refused

"""The local stack against the real PostgreSQL and Kafka: up, use, up again, down."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from domain.topics import all_topic_names_with_partitions
from infra import kafka
from infra import stack as infra_stack
from infra.exceptions import MigrationError
from infra.migrate import MIGRATIONS_DIR, apply_migrations, plan
from infra.processes import pid_matches, port_is_free
from infra.settings import StackSettings

pytestmark = pytest.mark.integration

SELFTEST_TOPIC = "infra.selftest"


def test_up_writes_stack_env(stack: dict[str, str], stack_dir: Path) -> None:
    metrics_ports = {k for k in stack if k.startswith("METRICS_PORT_")}
    assert set(stack) - metrics_ports == set(infra_stack.ENV_KEYS)
    assert {
        "METRICS_PORT_STREAMS",
        "METRICS_PORT_GATEWAY",
        "METRICS_PORT_LEDGER_0",
    } <= metrics_ports
    assert infra_stack.read_env(stack_dir) == stack
    assert stack["DATABASE_URL"].startswith("postgresql://")
    assert stack["DATABASE_URL"].endswith("/wallet")
    assert stack["KAFKA_BOOTSTRAP"].startswith("127.0.0.1:")
    assert stack["CLICKHOUSE_DSN"] == f"chdb://{stack_dir.resolve() / 'clickhouse'}"
    assert (stack_dir / "clickhouse").is_dir()
    assert stack["INGEST_URL"] != stack["ANALYTICS_URL"]
    assert stack["DEMO_API_KEY"].startswith("wp_demo_")


def test_every_domain_topic_exists(stack: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": stack["KAFKA_BOOTSTRAP"]})
    topics = admin.list_topics(timeout=10).topics
    for name, partitions in all_topic_names_with_partitions().items():
        assert name in topics, name
        assert len(topics[name].partitions) == partitions, name


def test_kafka_round_trip(stack: dict[str, str]) -> None:
    bootstrap = stack["KAFKA_BOOTSTRAP"]
    kafka.create_topics(bootstrap, {SELFTEST_TOPIC: 1}, timeout_s=10)
    value = uuid.uuid4().hex.encode()
    delivered = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(
        SELFTEST_TOPIC,
        key=b"selftest",
        value=value,
        on_delivery=lambda err, msg: delivered.append((err, msg)),
    )
    assert producer.flush(10) == 0
    error, record = delivered[0]
    assert error is None

    # Read exactly where our record landed: no group rebalance, no leftovers from old runs.
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"selftest-{value.decode()}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(SELFTEST_TOPIC, record.partition(), record.offset())])
        received = None
        deadline = time.monotonic() + 15
        while received is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                received = message
    finally:
        consumer.close()
    assert received is not None
    assert received.value() == value
    assert received.key() == b"selftest"


def test_postgres_is_migrated_and_has_demo_client(stack: dict[str, str]) -> None:
    url = stack["DATABASE_URL"]
    psql = subprocess.run(
        ["psql", url, "-Atc", "SELECT count(*) FROM schema_migrations"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    expected = plan(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    assert int(psql.stdout.strip()) >= len(expected)
    with psycopg.connect(url, connect_timeout=10) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY 1")]
        assert [m.name for m in expected] == [n for n in names if n in {m.name for m in expected}]
        if expected:  # api_clients comes from the migrations
            key_hash = hashlib.sha256(stack["DEMO_API_KEY"].encode()).hexdigest()
            row = conn.execute(
                "SELECT k.roles, c.rate_limit_per_second, k.revoked_at FROM api_keys k"
                " JOIN api_clients c USING (client_id) WHERE c.name = 'demo' AND k.key_hash = %s",
                (key_hash,),
            ).fetchone()
            assert row is not None and row[1:] == (1000, None)
            # A stack made before keys had roles keeps the demo key with every tenant role.
            assert {"customer_app", "pos"} <= set(row[0]) <= {"customer_app", "pos", "partner"}
    assert apply_migrations(url) == []


def test_apply_migrations_in_numeric_order_once(stack: dict[str, str], tmp_path: Path) -> None:
    """On a scratch database, so test versions never mix with the real schema_migrations."""
    admin_url = stack["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    scratch = f"migrate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    url = stack["DATABASE_URL"].rsplit("/", 1)[0] + f"/{scratch}"
    try:
        (tmp_path / "0010_third.sql").write_text("ALTER TABLE t ADD COLUMN c INT;")
        (tmp_path / "0002_second.sql").write_text("ALTER TABLE t ADD COLUMN b INT;")
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE t (a INT); SELECT '100%';")
        (tmp_path / "README.md").write_text("not a migration")
        assert apply_migrations(url, tmp_path) == [
            "0001_first.sql",
            "0002_second.sql",
            "0010_third.sql",
        ]
        assert apply_migrations(url, tmp_path) == []

        (tmp_path / "0011_broken.sql").write_text("CREATE TABLE u (a INT); SELEC 1;")
        with pytest.raises(MigrationError, match="0011_broken.sql"):
            apply_migrations(url, tmp_path)
        with psycopg.connect(url, connect_timeout=10) as conn:
            assert conn.execute("SELECT to_regclass('u')").fetchone() == (None,)
            versions = [
                r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")
            ]
            assert versions == [1, 2, 10]
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE "{scratch}" WITH (FORCE)')


def test_up_again_is_idempotent(stack: dict[str, str], stack_dir: Path) -> None:
    state_before = json.loads((stack_dir / "stack.json").read_text())
    rows_before = infra_stack.status(stack_dir)
    again = infra_stack.up(stack_dir)
    assert again == stack
    assert json.loads((stack_dir / "stack.json").read_text()) == state_before
    assert infra_stack.status(stack_dir) == rows_before  # same pids: nothing restarted


def test_status_reports_running(stack: dict[str, str], stack_dir: Path) -> None:
    rows = infra_stack.status(stack_dir)
    assert [(name, state) for name, state, _ in rows] == [
        ("postgres", "running"),
        ("kafka", "running"),
    ]
    kafka_port = stack["KAFKA_BOOTSTRAP"].rsplit(":", 1)[1]
    assert f"127.0.0.1:{kafka_port} pid " in dict((r[0], r[2]) for r in rows)["kafka"]
    assert "running" in infra_stack.format_status(rows)


def test_down_stops_every_process_and_frees_ports(start_stack, stack, stack_dir: Path) -> None:
    """A throw-away stack beside the shared one: proves down leaves nothing behind."""
    local_dir = Path(tempfile.mkdtemp(prefix="walletpipe-throwaway-"))
    settings = StackSettings(
        kafka_libs_dir=stack_dir / "kafka" / "libs", pg_shared_buffers_mb=32, kafka_heap_max_mb=512
    )
    try:
        env = start_stack(local_dir, settings)
        assert env["KAFKA_BOOTSTRAP"] != stack["KAFKA_BOOTSTRAP"]
        rows = infra_stack.status(local_dir, settings=settings)
        pids = {name: int(where.rsplit("pid ", 1)[1]) for name, _, where in rows}
        ports = json.loads((local_dir / "stack.json").read_text())["ports"]

        infra_stack.down(local_dir, settings=settings)

        for pid in pids.values():
            # Marker "" matches any live process: a pid gone or a zombie counts as dead
            # (this sandbox's init reaps orphans lazily).
            assert not pid_matches(pid, ""), pid
        assert _live_processes_mentioning(str(local_dir)) == []
        assert _live_children_of(set(pids.values())) == []
        for name in ("postgres", "kafka", "kafka_controller"):
            assert port_is_free(ports[name]), name
        assert [state for _, state, _ in infra_stack.status(local_dir, settings=settings)] == [
            "stopped",
            "stopped",
        ]
        infra_stack.down(local_dir, settings=settings)  # safe when nothing runs
    finally:
        infra_stack.down(local_dir, settings=settings)
        shutil.rmtree(local_dir, ignore_errors=True)


def _live_processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and pid_matches(int(proc.name), text):
            found.append(int(proc.name))
    return found


def _live_children_of(parents: set[int]) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if fields[0] not in ("Z", "X") and int(fields[1]) in parents:
            found.append(int(proc.name))
    return found

"""The dashboard in a real browser: Debian's headless Chromium renders /dashboard of an
analytics service fed through Kafka, and every chart must have drawn marks from the data.

The screenshot is kept in ``.local/test-artifacts/dashboard.png`` (the path is printed).
"""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from analytics.auth import Role
from analytics.clients import create_api_key
from domain import records
from domain.topics import all_topic_names_with_partitions
from domain.transactions import TransactionType as T
from infra.kafka import create_topics
from tests.helpers import ordered_producer
from walletpipe.supervisor import Service, Supervisor

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / ".local" / "test-artifacts" / "dashboard.png"
TRANSACTIONS = 240
CHARTS = ("volume", "latency", "rates", "scores", "reasons", "amounts")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--virtual-time-budget=5000",
)
TOPIC_OF = {
    "TransactionRequested": "transactions.requested",
    "PostTransaction": "ledger.commands",
    "TransactionRejected": "transactions.rejected",
    "TransactionPosted": "ledger.events",
    "ReviewRequested": "reviews.requested",
}


def traffic(now: datetime, count: int, seed: int = 6) -> list[records.Record]:
    """A live-looking mix over the last 40 minutes: payments, transfers, deposits and
    withdrawals in two currencies; a tenth declined, some held for review first; risk
    scores 0-100 as the stream writes them; varied latency."""
    rng = random.Random(seed)
    out: list[records.Record] = []
    for _ in range(count):
        ttype = rng.choice([T.PAYMENT, T.PAYMENT, T.TRANSFER, T.DEPOSIT, T.WITHDRAWAL])
        at = now - timedelta(seconds=rng.uniform(30, 40 * 60))
        amount = Decimal(f"{rng.lognormvariate(3.5, 1.0):.2f}") + Decimal("1")
        declined = rng.random() < 0.12
        score = Decimal(
            f"{100 * (rng.betavariate(6, 2) if declined else rng.betavariate(1.3, 7)):.2f}"
        )
        facts = {
            "transaction_id": uuid.uuid4(),
            "transaction_type": ttype,
            "source_wallet_id": None if ttype is T.DEPOSIT else uuid.uuid4(),
            "destination_wallet_id": uuid.uuid4() if ttype in (T.DEPOSIT, T.TRANSFER) else None,
            "amount": amount,
            "fee_amount": Decimal(0),
            "total_amount": amount,
            "currency_code": rng.choice(["USD", "USD", "EUR"]),
            "client_id": uuid.uuid4(),
            "idempotency_key": uuid.uuid4().hex,
            "requested_at": at,
        }
        decided = at + timedelta(milliseconds=rng.randint(5, 40))
        out.append(records.TransactionRequested(**facts))
        if rng.random() < 0.06:
            held = decided - timedelta(milliseconds=2)
            out.append(
                records.ReviewRequested(
                    **facts,
                    risk_score=max(score, Decimal(60)),
                    decided_at=held,
                    review_deadline=held + timedelta(minutes=5),
                )  # fmt: skip
            )
        if declined:
            reason = rng.choice(["FRAUD_DECLINED", "INSUFFICIENT_FUNDS", "LIMIT_EXCEEDED"])
            out.append(
                records.TransactionRejected(
                    **facts,
                    reason_code=reason,
                    reason_message="-",
                    risk_score=score,
                    decided_at=decided,
                )  # fmt: skip
            )
            continue
        done = decided + timedelta(milliseconds=int(rng.lognormvariate(4.5, 0.6)))
        out.append(records.PostTransaction(**facts, risk_score=score, decided_at=decided))
        out.append(records.TransactionPosted(**facts, risk_score=score, completed_at=done))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def analytics(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("dashboard")
    group = f"analytics-dashboard-{uuid.uuid4().hex[:8]}"
    # Private topics: the live stream and ledger writer of the e2e stack must not see this
    # made-up traffic (its wallets do not exist; answering it would delay the next tests).
    prefix = f"dashboard-{uuid.uuid4().hex[:8]}."
    topics = {prefix + name: count for name, count in all_topic_names_with_partitions().items()}
    create_topics(stack["KAFKA_BOOTSTRAP"], topics, timeout_s=30)
    env = {
        **stack,
        "CLICKHOUSE_DSN": f"chdb://{home / 'clickhouse'}",
        "ANALYTICS_URL": f"http://127.0.0.1:{free_port()}",
        "CONSUMER_GROUP": group,
        "CONSUMER_OFFSET_RESET": "latest",  # this run's traffic only, not earlier runs'
        "REGULATORY_INTERVAL_S": "30",
        "ANALYTICS_TOPIC_PREFIX": prefix,
    }
    service = Service(
        "analytics",
        [sys.executable, "-m", "analytics.service"],
        health_url=f"{env['ANALYTICS_URL']}/health",
        consumer_group=group,
    )
    supervisor = Supervisor(env, home / "logs", REPO)
    supervisor.start([service])
    try:
        supervisor.wait_ready([service], timeout_s=60)
        yield env
        supervisor.check_alive()
    finally:
        supervisor.stop()
        AdminClient({"bootstrap.servers": stack["KAFKA_BOOTSTRAP"]}).delete_topics(list(topics))


def chromium() -> str:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.fail(
            "Debian's chromium is missing: run infra/bootstrap.sh (apt-get install chromium)"
        )
    return found


def browse(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, url],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_dashboard_draws_every_chart_from_live_data(
    analytics: dict[str, str],
    stack: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = create_api_key(
        stack["DATABASE_URL"], name=f"dashboard-{uuid.uuid4().hex[:8]}", role=Role.ANALYST
    )
    producer = ordered_producer(stack["KAFKA_BOOTSTRAP"], **{"linger.ms": 5})
    for record in traffic(datetime.now(UTC), TRANSACTIONS):
        producer.produce(
            analytics["ANALYTICS_TOPIC_PREFIX"] + TOPIC_OF[record.kind],  # type: ignore[attr-defined]
            key=record.partition_key,  # type: ignore[attr-defined]
            value=records.encode(record),
        )
    assert producer.flush(15) == 0

    base = analytics["ANALYTICS_URL"]
    deadline = time.monotonic() + 20
    decided = 0
    while time.monotonic() < deadline and decided < TRANSACTIONS:
        answer = httpx.get(f"{base}/v1/reports/dashboard", headers={"X-API-Key": key}, timeout=10)
        decided = answer.json()["decisions"]["decided"]
        time.sleep(0.3)
    assert decided >= TRANSACTIONS

    url = f"{base}/dashboard#key={key}"
    dom = browse(url, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    marks = dict(re.findall(r'<svg id="(\w+)"[^>]*data-marks="(\d+)"', dom.stdout))
    assert set(marks) == set(CHARTS), dom.stdout[-3000:]
    assert all(int(n) > 0 for n in marks.values()), marks
    status = re.search(r'id="status">([^<]*)<', dom.stdout)
    assert status and status.group(1).startswith("updated"), status  # not "error: ..."
    assert int(marks["volume"]) >= 30  # decisions spread over the last 40 minutes
    assert key not in dom.stdout  # the key left the address bar and the page

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = browse(url, tmp_path / "profile-shot", f"--screenshot={SCREENSHOT}")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size > 30_000  # charts, not an empty page
    with capsys.disabled():
        print(f"\ndashboard screenshot: {SCREENSHOT}")

"""The analytics service as a process on the real stack: Kafka in, chDB (a tmp path),
PostgreSQL keys, the reporting API, the regulatory stream and exports, the CLI.

Records go in through Kafka, the way the pipeline sends them. Each test uses fresh ids, and
the count checks use a minute of their own far in the past, so what earlier runs left on
the topics never changes an expected number.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from analytics import export
from analytics.auth import Role
from analytics.clients import create_api_key
from analytics.exceptions import ManifestInvalid
from domain import records
from domain.topics import LEDGER_EVENTS, REGULATORY_REPORTS
from domain.transactions import TransactionType as T
from tests.helpers import ordered_producer

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TOPIC_OF = {
    "TransactionRequested": "transactions.requested",
    "PostTransaction": "ledger.commands",
    "TransactionRejected": "transactions.rejected",
    "TransactionPosted": "ledger.events",
    "ReviewRequested": "reviews.requested",
}
START_TIMEOUT_S = 60.0


def eventually(check: Callable[[], Any], timeout_s: float = 20.0, every_s: float = 0.1) -> Any:
    """Poll until ``check`` returns something truthy; its last answer otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(every_s)


def lifecycle(
    ttype: T,
    amount: str,
    at: datetime,
    *,
    outcome: str = "posted",
    score: str | None = None,
    reason: str = "INSUFFICIENT_FUNDS",
    latency_ms: int = 100,
    users: tuple[uuid.UUID | None, uuid.UUID | None] = (None, None),
    wallets: tuple[uuid.UUID | None, uuid.UUID | None] = (None, None),
    currency: str = "USD",
    reviewed: bool = False,
    scored_by: str | None = None,
    shadow_scores: dict[str, str] | None = None,
) -> list[records.Record]:
    """The records one transaction leaves on the topics: requested, (held for review,)
    decided, posted. Risk scores are 0-100, as the stream writes them."""
    src_user, dst_user = users
    src_wallet, dst_wallet = wallets
    if ttype is not T.DEPOSIT:
        src_user, src_wallet = src_user or uuid.uuid4(), src_wallet or uuid.uuid4()
    if ttype in (T.DEPOSIT, T.TRANSFER):
        dst_user, dst_wallet = dst_user or uuid.uuid4(), dst_wallet or uuid.uuid4()
    facts = {
        "transaction_id": uuid.uuid4(),
        "transaction_type": ttype,
        "source_wallet_id": src_wallet,
        "destination_wallet_id": dst_wallet,
        "source_user_id": src_user,
        "destination_user_id": dst_user,
        "amount": Decimal(amount),
        "fee_amount": Decimal(0),
        "total_amount": Decimal(amount),
        "currency_code": currency,
        "client_id": uuid.uuid4(),
        "idempotency_key": uuid.uuid4().hex,
        "requested_at": at,
        "metadata": {"channel": "pos"},
    }
    risk = None if score is None else Decimal(score)
    models = {
        "scored_by": scored_by,
        "shadow_scores": {k: Decimal(v) for k, v in (shadow_scores or {}).items()},
    }
    decided = at + timedelta(milliseconds=latency_ms // 3)
    out: list[records.Record] = [records.TransactionRequested(**facts)]
    if reviewed:
        out.append(
            records.ReviewRequested(
                **facts,
                risk_score=risk or Decimal(70),
                decided_at=at + timedelta(milliseconds=1),
                review_deadline=at + timedelta(minutes=5),
            )
        )
    if outcome == "rejected":
        out.append(
            records.TransactionRejected(
                **facts,
                reason_code=reason,
                reason_message="no",
                risk_score=risk,
                decided_at=decided,
                **models,
            )
        )
        return out
    out.append(records.PostTransaction(**facts, risk_score=risk, decided_at=decided, **models))
    done = at + timedelta(milliseconds=latency_ms)
    out.append(records.TransactionPosted(**facts, risk_score=risk, completed_at=done))
    return out


def produce(bootstrap: str, items: list[records.Record]) -> None:
    producer = ordered_producer(bootstrap, **{"linger.ms": 5})
    for record in items:
        producer.produce(
            TOPIC_OF[record.kind],  # type: ignore[attr-defined]
            key=record.partition_key,  # type: ignore[attr-defined]
            value=records.encode(record),
        )
    assert producer.flush(15) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """``python -m analytics.service`` on a tmp chDB path, started and stopped by the test."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.url = env["ANALYTICS_URL"]
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "analytics.service"],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()
            try:
                health = httpx.get(f"{self.url}/health", timeout=2).json()
            except httpx.HTTPError:
                return False
            return health["sink_consuming"] and health["regulatory_cycles"] >= 1

        assert eventually(ready, START_TIMEOUT_S, 0.25), self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/health", timeout=5).json()

    def get(self, path: str, key: str | None, **params: Any) -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        return httpx.get(f"{self.url}{path}", headers=headers, params=params, timeout=30)


@pytest.fixture(scope="module")
def service(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("analytics")
    env = {
        **os.environ,
        **stack,
        "CLICKHOUSE_DSN": f"chdb://{home / 'clickhouse'}",
        "ANALYTICS_URL": f"http://127.0.0.1:{free_port()}",
        "CONSUMER_GROUP": f"analytics-test-{uuid.uuid4().hex[:8]}",
        "REGULATORY_INTERVAL_S": "1",
        "CTR_GRACE_MINUTES": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("CLICKHOUSE_URL", None)
    env.pop("REGULATORY_SIGNING_KEY", None)
    running = Service(env, home / "service.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def keys(stack: dict[str, str]) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    made = {
        role.value: create_api_key(
            stack["DATABASE_URL"], name=f"test-{role.value}-{tag}", role=role
        )
        for role in (Role.ANALYST, Role.REGULATOR)
    }
    return {**made, "client": stack["DEMO_API_KEY"]}


def a_quiet_minute() -> datetime:
    """A minute of this run alone: months back, at random (reports reach 366 days)."""
    back = timedelta(days=random.randint(30, 300), minutes=random.randint(0, 1439))
    return (datetime.now(UTC) - back).replace(second=0, microsecond=0)


def test_replayed_records_are_counted_once(
    service: Service, stack: dict[str, str], keys: dict[str, str]
) -> None:
    minute = a_quiet_minute()
    batch: list[records.Record] = []
    for i in range(40):
        at = minute + timedelta(milliseconds=500 * i)
        rejected = i % 4 == 0
        batch += lifecycle(
            [T.PAYMENT, T.TRANSFER][i % 2],
            f"{10 + i}.25",
            at,
            outcome="rejected" if rejected else "posted",
            score=f"{90 + i % 10}.00" if rejected else f"{10 + i}.00",
            reason="FRAUD_DECLINED" if i % 8 == 0 else "INSUFFICIENT_FUNDS",
            reviewed=i % 10 == 5,  # four transfers held for review, then approved
        )
    window = {"from": minute.isoformat(), "to": (minute + timedelta(minutes=1)).isoformat()}

    def volume() -> dict[tuple[str, str], tuple[int, Decimal]]:
        rows = service.get("/v1/reports/volume", keys["analyst"], **window).json()["rows"]
        totals: dict[tuple[str, str], tuple[int, Decimal]] = {}
        for row in rows:
            n, amount = totals.get((row["event_kind"], row["transaction_type"]), (0, Decimal(0)))
            totals[(row["event_kind"], row["transaction_type"])] = (
                n + row["events"],
                amount + Decimal(row["amount"]),
            )
        return totals

    produce(stack["KAFKA_BOOTSTRAP"], batch)
    expected = {
        ("requested", "PAYMENT"): (20, sum(Decimal(f"{10 + i}.25") for i in range(0, 40, 2))),
        ("requested", "TRANSFER"): (20, sum(Decimal(f"{10 + i}.25") for i in range(1, 40, 2))),
        ("rejected", "PAYMENT"): (10, sum(Decimal(f"{10 + i}.25") for i in range(0, 40, 4))),
        ("approved", "PAYMENT"): (10, sum(Decimal(f"{10 + i}.25") for i in range(2, 40, 4))),
        ("posted", "PAYMENT"): (10, sum(Decimal(f"{10 + i}.25") for i in range(2, 40, 4))),
        ("approved", "TRANSFER"): (20, sum(Decimal(f"{10 + i}.25") for i in range(1, 40, 2))),
        ("posted", "TRANSFER"): (20, sum(Decimal(f"{10 + i}.25") for i in range(1, 40, 2))),
        ("review", "TRANSFER"): (4, sum(Decimal(f"{10 + i}.25") for i in range(5, 40, 10))),
    }
    assert eventually(lambda: volume() == expected), volume()

    dropped_before = service.health()["duplicates_dropped"]
    produce(stack["KAFKA_BOOTSTRAP"], batch + batch[:10])  # a replay, and repeats in it
    assert eventually(
        lambda: service.health()["duplicates_dropped"] >= dropped_before + len(batch) + 10
    )
    assert volume() == expected  # the roll-ups did not count the replay

    def report(name: str, **extra: Any) -> dict[str, Any]:
        answer = service.get(f"/v1/reports/{name}", keys["analyst"], **window, **extra)
        assert answer.status_code == 200, answer.text
        return answer.json()

    rates = report("approval-rates")
    assert (rates["approve"], rates["decline"], rates["review"]) == (30, 10, 4)
    assert (rates["decided"], rates["approve_rate"]) == (44, round(30 / 44, 4))
    fraud = report("fraud-rates")
    assert (fraud["decided"], fraud["fraud_declined"], fraud["scored"]) == (44, 5, 44)
    assert fraud["high_risk"] == 10  # every rejected one scored 90 .. 99
    reasons = {r["reason_code"]: r["events"] for r in report("decline-reasons")["reasons"]}
    assert reasons == {"FRAUD_DECLINED": 5, "INSUFFICIENT_FUNDS": 5}
    latency = report("latency")
    assert (latency["completed"], latency["p50_ms"], latency["max_ms"]) == (30, 100, 100)
    scores = report("fraud-scores")
    assert scores["scored"] == 44 and scores["bins"][3]["review"] == 1  # i=5 scored 15
    assert sum(b["decline"] for b in scores["bins"] if b["from"] >= 90) == 10
    hourly = report("volume", granularity="hour")["series"]
    assert {row["bucket"] for row in hourly} == {
        minute.replace(minute=0).isoformat()[:19] + ".000Z"
    }

    posted = next(r for r in batch if isinstance(r, records.TransactionPosted))
    events = service.get(f"/v1/reports/transactions/{posted.transaction_id}", keys["analyst"])
    assert sorted(e["event_kind"] for e in events.json()["events"]) == [
        "approved",
        "posted",
        "requested",
    ]


def challenger_of(answer: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in answer["models"] if m["role"] == "challenger")


def test_champion_and_challenger_scores_are_compared_per_decision(
    service: Service, stack: dict[str, str], keys: dict[str, str]
) -> None:
    minute = a_quiet_minute()
    decisions = [  # (outcome, champion's score, challenger's score)
        ("posted", "10.00", "20.00"),
        ("posted", "20.00", "20.00"),
        ("posted", "30.00", "40.00"),
        ("rejected", "90.00", "80.00"),
    ]
    batch: list[records.Record] = []
    for i, (outcome, champion, challenger) in enumerate(decisions):
        batch += lifecycle(
            T.PAYMENT,
            "5.00",
            minute + timedelta(seconds=i),
            outcome=outcome,
            score=champion,
            scored_by="fraud-gbm v3",
            shadow_scores={"fraud-gbm v4": challenger},
        )
    batch += lifecycle(T.PAYMENT, "5.00", minute + timedelta(seconds=9), score="50.00")  # unnamed
    produce(stack["KAFKA_BOOTSTRAP"], batch)
    window = {"from": minute.isoformat(), "to": (minute + timedelta(minutes=1)).isoformat()}

    def report() -> dict[str, Any]:
        answer = service.get("/v1/reports/model-scores", keys["analyst"], **window)
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert eventually(lambda: report()["decisions"] == 4), report()
    champion, challenger = report()["models"]
    assert (champion["model"], champion["role"], champion["scored"]) == (
        "fraud-gbm v3",
        "champion",
        4,
    )
    assert (champion["mean"], champion["by_decision"]["approve"]["mean"]) == (37.5, 20.0)
    assert champion["by_decision"]["decline"] == {"scored": 1, "mean": 90.0, "p50": 90, "p90": 90}
    assert (champion["p50"], challenger_of(report())["p90"]) == (20, 80)
    assert (challenger["model"], challenger["role"], challenger["mean"]) == (
        "fraud-gbm v4",
        "challenger",
        40.0,
    )
    assert challenger["mean_abs_diff_to_champion"] == 7.5  # |10| + 0 + |10| + |-10|, / 4
    assert challenger["mean_diff_to_champion"] == 2.5
    assert [b["scored"] for b in challenger["bins"]] == [0, 0, 2, 0, 1, 0, 0, 0, 1, 0]
    assert [b["scored"] for b in champion["bins"]] == [0, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    regulator = service.get("/v1/reports/model-scores", keys["regulator"], **window)
    assert regulator.json()["error"]["code"] == "REPORT_FORBIDDEN_FOR_ROLE"


def test_a_posted_transaction_is_queryable_within_5_seconds(
    service: Service, stack: dict[str, str], keys: dict[str, str]
) -> None:
    posted = lifecycle(T.PAYMENT, "12.34", datetime.now(UTC))[-1]
    produce(stack["KAFKA_BOOTSTRAP"], [posted])
    sent = time.monotonic()
    path = f"/v1/reports/transactions/{posted.transaction_id}"  # type: ignore[attr-defined]
    found = eventually(lambda: service.get(path, keys["analyst"]).json()["events"], 10.0, 0.05)
    elapsed = time.monotonic() - sent
    assert found and found[0]["event_kind"] == "posted" and found[0]["amount"] == "12.3400"
    assert elapsed < 5.0, f"visible after {elapsed:.2f}s"


def test_a_record_the_sink_cannot_map_goes_to_the_dead_letter_topic(
    service: Service, stack: dict[str, str]
) -> None:
    dead = TopicPartition(LEDGER_EVENTS.dead_letter, 0)
    consumer = Consumer({"bootstrap.servers": stack["KAFKA_BOOTSTRAP"], "group.id": "t"})
    try:
        _, high = consumer.get_watermark_offsets(dead, timeout=10)
        consumer.assign([TopicPartition(dead.topic, 0, high)])
        key = uuid.uuid4().hex.encode()
        producer = Producer({"bootstrap.servers": stack["KAFKA_BOOTSTRAP"]})
        producer.produce(LEDGER_EVENTS.name, key=key, value=b'{"kind": "TransactionPosted"}')
        producer.flush(10)

        def dead_letter() -> Any:
            for message in consumer.consume(100, timeout=0.5):
                if not message.error() and message.key() == key:
                    return dict(message.headers())
            return None

        headers = eventually(dead_letter, 20.0, 0)
    finally:
        consumer.close()
    assert headers, "no dead letter arrived"
    assert headers["dlq.topic"] == LEDGER_EVENTS.name.encode()
    assert b"field required" in headers["dlq.reason"].lower()


ERRORS = [
    # (path, who, params, status, code)
    ("/v1/reports/volume", None, {}, 401, "MISSING_API_KEY"),
    ("/v1/reports/volume", "wp_analyst_not-a-real-key", {}, 401, "INVALID_API_KEY"),
    ("/v1/reports/no-such-report", None, {}, 401, "MISSING_API_KEY"),
    ("/v1/reports/volume", "regulator", {}, 403, "REPORT_FORBIDDEN_FOR_ROLE"),
    ("/v1/reports/dashboard", "regulator", {}, 403, "REPORT_FORBIDDEN_FOR_ROLE"),
    ("/v1/reports/latency", "client", {}, 403, "REPORT_FORBIDDEN_FOR_ROLE"),
    (
        "/v1/reports/regulatory/export",
        "analyst",
        {"period": "2026-01"},
        403,
        "REPORT_FORBIDDEN_FOR_ROLE",
    ),  # fmt: skip
    ("/v1/reports/no-such-report", "analyst", {}, 404, "UNKNOWN_REPORT"),
    ("/v1/reports/regulatory/nothing", "regulator", {}, 404, "UNKNOWN_REPORT"),
    (
        "/v1/reports/volume",
        "analyst",
        {"from": "2026-02-01T00:00Z", "to": "2026-01-01T00:00Z"},
        422,
        "INVALID_RANGE",
    ),  # fmt: skip
    ("/v1/reports/volume", "analyst", {"from": "2020-01-01T00:00Z"}, 422, "RANGE_TOO_LARGE"),
    ("/v1/reports/volume", "analyst", {"from": "2026-01-01T00:00"}, 422, "INVALID_RANGE"),
    ("/v1/reports/volume", "analyst", {"from": "yesterday"}, 422, "INVALID_REQUEST"),
    ("/v1/reports/volume", "analyst", {"granularity": "week"}, 422, "INVALID_GRANULARITY"),
    (
        "/v1/reports/latency",
        "analyst",
        {"from": "2026-01-01T00:00Z", "to": "2026-02-01T00:00Z", "granularity": "minute"},
        422,
        "TOO_MANY_POINTS",
    ),  # fmt: skip
    ("/v1/reports/regulatory/export", "regulator", {"period": "2026-13"}, 422, "INVALID_PERIOD"),
    ("/v1/reports/regulatory/export", "regulator", {}, 422, "INVALID_REQUEST"),
    (
        "/v1/reports/regulatory/suspicious-activity",
        "regulator",
        {"from": "2025-01-01T00:00Z"},
        422,
        "RANGE_TOO_LARGE",
    ),  # fmt: skip
    ("/v1/reports/transactions/not-a-uuid", "analyst", {}, 422, "INVALID_REQUEST"),
]


def test_bad_requests_get_a_4xx_with_a_stable_code(service: Service, keys: dict[str, str]) -> None:
    for path, who, params, status, code in ERRORS:
        key = keys.get(who, who) if who else None
        answer = service.get(path, key, **params)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (
            path,
            who,
            params,
            answer.text,
        )
        assert answer.json()["error"]["message"]


def test_regulatory_reports_stream_once_and_exports_repeat_byte_for_byte(
    service: Service, stack: dict[str, str], keys: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = stack["KAFKA_BOOTSTRAP"]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t"})
    partitions = []
    for p in range(REGULATORY_REPORTS.partitions):
        _, high = consumer.get_watermark_offsets(
            TopicPartition(REGULATORY_REPORTS.name, p), timeout=10
        )
        partitions.append(TopicPartition(REGULATORY_REPORTS.name, p, high))
    consumer.assign(partitions)

    now = datetime.now(UTC)
    structurer, cash_user, mule, risky = (uuid.uuid4() for _ in range(4))
    yesterday = (now - timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    mule_wallet = uuid.uuid4()
    movements = [
        *[
            r
            for h in (30, 28, 26)
            for r in lifecycle(
                T.DEPOSIT, "9000.00", now - timedelta(hours=h), users=(None, structurer)
            )
        ],
        *lifecycle(T.DEPOSIT, "6000.00", yesterday, users=(None, cash_user)),
        *lifecycle(T.DEPOSIT, "6000.00", yesterday + timedelta(hours=3), users=(None, cash_user)),
        *lifecycle(
            T.DEPOSIT,
            "5000.00",
            now - timedelta(hours=5),
            users=(None, mule),
            wallets=(None, mule_wallet),
        ),
        *lifecycle(
            T.WITHDRAWAL,
            "4800.00",
            now - timedelta(hours=4),
            users=(mule, None),
            wallets=(mule_wallet, None),
        ),
        *lifecycle(
            T.PAYMENT, "70.00", now - timedelta(minutes=2), score="97.00", users=(risky, None)
        ),
    ]
    produce(bootstrap, movements)
    subjects = {str(u): u for u in (structurer, cash_user, mule, risky)}
    wanted = {
        str(structurer): "STRUCTURING_24H",
        str(cash_user): "CURRENCY_TRANSACTION",
        str(mule): "RAPID_IN_OUT",
        str(risky): "HIGH_RISK_SCORE",
    }
    received: list[dict[str, Any]] = []

    def drain(wait_s: float) -> None:
        for message in consumer.consume(500, timeout=wait_s):
            if message.error():
                continue
            record = json.loads(message.value())
            if record["subject_user_id"] in subjects:
                received.append(record)

    def all_arrived() -> bool:
        drain(0.5)
        got = {(r["subject_user_id"], r["report_type"]) for r in received}
        return all(pair in got for pair in wanted.items())

    try:
        assert eventually(all_arrived, 30.0, 0), received
        evidence = next(r for r in received if r["report_type"] == "RAPID_IN_OUT")["evidence"]
        assert [(e["direction"], e["amount"]) for e in evidence] == [
            ("in", "5000.0000"),
            ("out", "4800.0000"),
        ]
        ctr = next(
            r
            for r in received
            if r["report_type"] == "CURRENCY_TRANSACTION" and r["subject_user_id"] == str(cash_user)
        )  # (the structurer may have one too, when its deposits fell on one day)
        assert (ctr["total_amount"], ctr["business_day"]) == ("12000.0000", str(yesterday.date()))
        assert len({r["report_id"] for r in received}) == len(received)  # each emitted once

        service.stop()  # a restart must not emit them again
        service.start()
        cycles = service.health()["regulatory_cycles"]
        assert eventually(lambda: service.health()["regulatory_cycles"] >= cycles + 2, 20.0)
        count = len(received)
        drain(2.0)
        assert len(received) == count, received[count:]
    finally:
        consumer.close()

    first = service.get(
        "/v1/reports/regulatory/export", keys["regulator"], period=str(yesterday.date())
    )
    second = service.get(
        "/v1/reports/regulatory/export", keys["regulator"], period=str(yesterday.date())
    )
    assert first.status_code == 200, first.text
    assert first.content == second.content  # byte-identical files, manifest and signature
    files = {name: text.encode() for name, text in first.json()["files"].items()}
    manifest = files[first.json()["manifest"]]
    key = (
        Path(service.env["CLICKHOUSE_DSN"].removeprefix("chdb://")).parent
        / "regulatory-signing.key"
    )
    verified = export.verify(manifest, files, key.read_text().strip().encode())
    assert verified["report_counts"]["CURRENCY_TRANSACTION"] >= 1
    assert str(cash_user) in files[f"regulatory-{yesterday.date()}.csv"].decode()
    files[f"regulatory-{yesterday.date()}.json"] += b" "
    with pytest.raises(ManifestInvalid):
        export.verify(manifest, files, key.read_text().strip().encode())

    ctrs = service.get(
        "/v1/reports/regulatory/currency-transactions",
        keys["regulator"],
        **{"from": yesterday.replace(hour=0).isoformat(), "to": now.isoformat()},
    ).json()["reports"]
    assert ctr["report_id"] in {r["report_id"] for r in ctrs}  # on demand = as streamed


def cli(service: Service, stack_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**service.env, "WALLETPIPE_LOCAL_DIR": str(stack_dir)}
    env.pop("ANALYTICS_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "walletpipe.cli", "reports", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_makes_keys_and_reads_reports_through_the_api(
    service: Service, stack_dir: Path, tmp_path: Path
) -> None:
    made = cli(
        service,
        stack_dir,
        "create-key",
        "--role",
        "analyst",
        "--name",
        f"cli-{uuid.uuid4().hex[:8]}",
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("wp_") and len(key) >= 40  # random: its roles are in api_keys
    assert service.get("/v1/reports/latency", key).status_code == 200

    report = cli(service, stack_dir, "approval-rates", "--api-key", key, "--granularity", "day")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["granularity"] == "day"
    refused = cli(service, stack_dir, "export", "--period", "2026-01", "--api-key", key)
    assert refused.returncode == 1 and "REPORT_FORBIDDEN_FOR_ROLE" in refused.stderr

    out = tmp_path / "export"
    period = str((datetime.now(UTC) - timedelta(days=1)).date())
    exported = cli(service, stack_dir, "export", "--period", period, "--out", str(out))
    assert exported.returncode == 0, exported.stderr  # the CLI's own local admin key
    manifest = out / f"regulatory-{period}.manifest.json"
    key_file = (
        Path(service.env["CLICKHOUSE_DSN"].removeprefix("chdb://")).parent
        / "regulatory-signing.key"
    )
    verified = cli(service, stack_dir, "verify-export", str(manifest), "--key-file", str(key_file))
    assert verified.returncode == 0 and verified.stdout.startswith("ok"), verified.stderr
    (out / f"regulatory-{period}.csv").write_text("report_id\n")
    tampered = cli(service, stack_dir, "verify-export", str(manifest), "--key-file", str(key_file))
    assert tampered.returncode == 1 and "MANIFEST_INVALID" in tampered.stderr

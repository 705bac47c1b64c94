"""bench/streams: events/s through the screening stage, against a raw consume-and-produce of
the same records, in the same run.

    .venv/bin/python -m bench.streams.run [--events 20000] [--wallets 1000]

Needs Kafka: ``KAFKA_BOOTSTRAP`` from the environment or ``.local/stack.env`` (``walletpipe
up``). Everything runs on private topics (``bench-streams-<id>-*``, 8 partitions), deleted
at the end, so a running pipeline on the same broker is not disturbed.

* **raw**: confluent-kafka consumes the requests in batches and produces each value again
  (linger), nothing else: the ceiling of this machine's Kafka path in Python.
* **worker**: the real stream worker (``python -m streams.app`` on the private topics, its
  RocksDB tables, changelogs and commits), one process. Its wallets are funded first through
  its own credit topic; then the requests are produced and the clock runs until every one
  has come out as a ledger command, a rejection or a review. Features are the offline
  engine's (``models.features``); scoring is the online scorer (river HalfSpaceTrees plus
  rules), or with ``--models-dir`` the registry's champion forest; the default KYC limits
  apply to half the requests. Each approved request also sends its terminal's activity to
  the terminal agent in the same worker, whose table work counts in the worker's CPU while
  it keeps up.
* **faust pass-through**: the smallest faust worker (``bench/streams/passthrough.py``), one
  agent forwarding every record unchanged: what faust-streaming itself costs per record
  here, the ceiling of any faust worker on this machine.
* **handlers**: the worker's pure handlers (decode, limits, features + score, policy,
  reservation, encode) in a plain batched confluent-kafka loop, state in dicts: what the
  decision logic itself costs without faust.

Target (issue 4): >= 5,000 events/s on one worker. Not a test: it prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from domain import records
from domain.limits import KycStatus
from domain.topics import (
    LEDGER_COMMANDS,
    LEDGER_EVENTS,
    LIMITS_CHANGES,
    REVIEWS_DECISIONS,
    REVIEWS_REQUESTED,
    TERMINAL_ACTIVITY,
    TRANSACTIONS_REJECTED,
    TRANSACTIONS_REQUESTED,
    WALLET_CREDITS,
)
from domain.transactions import TransactionType
from models.features import CustomerState, TerminalState
from models.simple import RulesAndTrees
from streams.decision import Policy, assess
from streams.features import StreamFeatures, event_of
from streams.limits import DefaultLimits, LimitSet, LimitUsage, applicable
from streams.models_watch import ModelWatcher
from streams.screening import screen
from streams.settings import DEFAULT_LIMITS_JSON
from streams.wallet_state import WalletState

PARTITIONS = 8
BATCH_MAX = 5000
LINGER_MS = 20
REPO = Path(__file__).resolve().parents[2]
WORKER_TOPICS = (
    TRANSACTIONS_REQUESTED,
    LEDGER_COMMANDS,
    TRANSACTIONS_REJECTED,
    LEDGER_EVENTS,
    WALLET_CREDITS,
    LIMITS_CHANGES,
    REVIEWS_REQUESTED,
    REVIEWS_DECISIONS,
    TERMINAL_ACTIVITY,
)
#: Every request leaves the screening stage on one of these.
WORKER_OUTPUTS = (LEDGER_COMMANDS, TRANSACTIONS_REJECTED, REVIEWS_REQUESTED)
WORKER_START_TIMEOUT_S = 120.0
WORKER_RUN_TIMEOUT_S = 600.0
FUNDING = Decimal("1000000")
TARGET_PER_S = 5_000
PASSTHROUGH_WARM_UP = 200


@dataclass(frozen=True)
class Rate:
    """Events through a stage: per wall second, and per second of the stage's own CPU time
    (the steadier figure on a busy 2-core machine, where the broker competes for the cores)."""

    events: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.events / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.events / self.cpu_s


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (every thread), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bootstrap() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP"):
        return os.environ["KAFKA_BOOTSTRAP"]
    for line in (REPO / ".local" / "stack.env").read_text().splitlines():
        if line.startswith("KAFKA_BOOTSTRAP="):
            return line.split("=", 1)[1].strip()
    raise SystemExit("no KAFKA_BOOTSTRAP: run `walletpipe up` first")


def producer(servers: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": servers,
            "linger.ms": LINGER_MS,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def requests(count: int, wallets: list[uuid.UUID], seed: int) -> list[records.TransactionRequested]:
    rng = random.Random(seed)
    client = uuid.uuid4()
    out = []
    for i in range(count):
        source, destination = rng.sample(wallets, 2)
        amount = Decimal(rng.randrange(100, 5000)) / 100
        out.append(
            records.TransactionRequested(
                transaction_id=uuid.uuid4(),
                transaction_type=TransactionType.TRANSFER,
                source_wallet_id=source,
                destination_wallet_id=destination,
                amount=amount,
                fee_amount=Decimal(0),
                total_amount=amount,
                currency_code="USD",
                client_id=client,
                idempotency_key=f"bench-{i}",
                requested_at=datetime.now(UTC),
                kyc_status=KycStatus.VERIFIED if i % 2 else KycStatus.PENDING,
            )
        )
    return out


def fill(servers: str, topic: str, items: list[records.TransactionRequested]) -> None:
    out = producer(servers)
    for item in items:
        out.produce(topic, key=item.partition_key, value=records.encode(item))
        out.poll(0)
    out.flush(60)


def consume_all(servers: str, topic: str, total: int, handle_batch) -> Rate:  # type: ignore[no-untyped-def]
    """Consume ``total`` records in batches, hand each batch to ``handle_batch``; the rate
    from the first batch on, with this process's CPU time (librdkafka's threads too)."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"bench-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.min.bytes": 1_000_000,
            "fetch.wait.max.ms": 20,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    started = cpu_started = None
    try:
        while seen < total:
            batch = [m for m in consumer.consume(BATCH_MAX, timeout=1) if m.error() is None]
            if not batch:
                continue
            if started is None:
                started, cpu_started = time.perf_counter(), time.process_time()
            handle_batch(batch)
            seen += len(batch)
        handle_batch(None)  # flush
        if started is None or cpu_started is None:
            raise SystemExit("no records came")
        return Rate(total, time.perf_counter() - started, time.process_time() - cpu_started)
    finally:
        consumer.close()


def run_raw(servers: str, source: str, target: str, total: int) -> Rate:
    out = producer(servers)

    def handle(batch) -> None:  # type: ignore[no-untyped-def]
        if batch is None:
            out.flush(60)
            return
        for message in batch:
            out.produce(target, key=message.key(), value=message.value())
        out.poll(0)

    return consume_all(servers, source, total, handle)


def run_screening(
    servers: str, source: str, target: str, total: int, wallets: int, models_dir: Path | None
) -> Rate:
    out = producer(servers)
    states: dict[bytes, WalletState] = {}
    usage: dict[bytes, LimitUsage] = defaultdict(LimitUsage)
    customers: dict[bytes, CustomerState] = {}
    terminals: dict[str, TerminalState] = defaultdict(TerminalState)
    features = StreamFeatures()
    scorer, policy = ModelWatcher(models_dir, "fraud", RulesAndTrees(seed=1), 7), Policy()
    defaults, no_limits = DefaultLimits.from_json(DEFAULT_LIMITS_JSON), LimitSet()

    def state_of(key: bytes) -> WalletState:
        state = states.get(key)
        if state is None:
            state = states[key] = WalletState()
            state.credit("bench-funding", Decimal("1000000"))
        return state

    def handle(batch) -> None:  # type: ignore[no-untyped-def]
        if batch is None:
            out.flush(60)
            return
        by_partition = defaultdict(list)
        for message in batch:  # never mix partitions: state is per wallet partition
            by_partition[message.partition()].append(message)
        for messages in by_partition.values():
            for message in messages:
                key = message.key()
                request = records.decode_requested(message.value())
                event = event_of(request)
                customer = customers.get(key)
                x = features.features(event, customer, terminals.get(event.terminal))
                assessment = assess(request, x, scorer.score(x), policy)
                limits = applicable(request, no_limits, defaults)
                outcome = screen(request, state_of(key), limits, usage[key], assessment)
                if isinstance(outcome.command, records.PostTransaction):
                    customers[key] = features.observe(event, customer)
                    # The terminal agent's part, inline here.
                    terminal = terminals[event.terminal]
                    features.observe_terminal(event.terminal, event.time_s, terminal)
                if outcome.command is not None:
                    out.produce(target, key=key, value=records.encode(outcome.command))
            out.poll(0)

    return consume_all(servers, source, total, handle)


def fund(servers: str, topic: str, wallets: list[uuid.UUID]) -> None:
    """One posted credit per wallet on the worker's credit topic: its spendable balance."""
    out = producer(servers)
    for wallet in wallets:
        credit = records.WalletCredited(
            wallet_id=wallet, transaction_id=uuid.uuid4(), amount=FUNDING, currency_code="USD"
        )
        out.produce(topic, key=str(wallet).encode(), value=records.encode(credit))
        out.poll(0)
    out.flush(60)


def committed_all(servers: str, group: str, topic: str) -> bool:
    """Has the consumer group committed every record of ``topic``?"""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = consumer.committed(parts, timeout=10)
        for part in committed:
            _, high = consumer.get_watermark_offsets(part, timeout=10)
            if high > 0 and part.offset < high:
                return False
        return True
    finally:
        consumer.close()


def count_outputs(servers: str, topics: list[str], total: int, timeout_s: float) -> float:
    """Seconds until ``total`` records have arrived on ``topics`` (read from the start)."""
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"bench-count-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    seen, started = 0, time.perf_counter()
    try:
        while seen < total:
            if time.perf_counter() - started > timeout_s:
                raise SystemExit(f"worker: only {seen} of {total} outputs in {timeout_s:.0f} s")
            seen += sum(1 for m in consumer.consume(BATCH_MAX, timeout=0.5) if m.error() is None)
        return time.perf_counter() - started
    finally:
        consumer.close()


def run_worker(
    servers: str,
    prefix: str,
    items: list[records.TransactionRequested],
    wallets: list,
    models_dir: Path | None = None,
) -> Rate:
    """The real worker process on the private topics: from the first request produced to
    the last decision out, with the worker process's CPU time."""
    name = f"{prefix}-".__add__
    app_id = name("app")
    workdir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": servers,
        "STREAMS_TOPIC_PREFIX": name(""),
        "STREAMS_APP_ID": app_id,
        "STREAMS_DATA_DIR": str(workdir / "data"),
        "STREAMS_LOG_LEVEL": "warn",
        **({} if models_dir is None else {"STREAMS_MODELS_DIR": str(models_dir.resolve())}),
    }
    fund(servers, name(WALLET_CREDITS.name), wallets)
    log = (workdir / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.app"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while not committed_all(servers, app_id, name(WALLET_CREDITS.name)):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker did not take the funding; see {workdir}/worker.log")
            time.sleep(1)
        started, cpu_started = time.perf_counter(), process_cpu_s(worker.pid)
        fill(servers, name(TRANSACTIONS_REQUESTED.name), items)
        outputs = [name(spec.name) for spec in WORKER_OUTPUTS]
        count_outputs(servers, outputs, len(items), WORKER_RUN_TIMEOUT_S)
        cpu_s = process_cpu_s(worker.pid) - cpu_started
        return Rate(len(items), time.perf_counter() - started, cpu_s)
    finally:
        stop(worker)
        log.close()


def run_passthrough(servers: str, prefix: str, items: list[records.TransactionRequested]) -> Rate:
    """faust alone (bench/streams/passthrough.py): every request forwarded as it is. A
    warm-up of records first, so the clock starts with the agent running."""
    source, target = f"{prefix}-pass-in", f"{prefix}-pass-out"
    warm_up = items[:PASSTHROUGH_WARM_UP]
    fill(servers, source, warm_up)
    workdir = Path(tempfile.mkdtemp(prefix="bench-passthrough-"))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": servers,
        "BENCH_APP_ID": f"{prefix}-pass-app",
        "BENCH_SOURCE": source,
        "BENCH_TARGET": target,
    }
    log = (workdir / "passthrough.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.streams.passthrough"],
        cwd=workdir,
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=log,
        stderr=log,
    )
    try:
        count_outputs(servers, [target], len(warm_up), WORKER_START_TIMEOUT_S)
        started, cpu_started = time.perf_counter(), process_cpu_s(process.pid)
        fill(servers, source, items)
        count_outputs(servers, [target], len(warm_up) + len(items), WORKER_RUN_TIMEOUT_S)
        cpu_s = process_cpu_s(process.pid) - cpu_started
        return Rate(len(items), time.perf_counter() - started, cpu_s)
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen) -> None:  # type: ignore[type-arg]
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def worker_topics(prefix: str) -> list[str]:
    names = [f"{prefix}-{spec.name}" for spec in WORKER_TOPICS]
    names += [f"{prefix}-{spec.dead_letter}" for spec in WORKER_TOPICS]
    return names


def show(label: str, rate: Rate, raw: Rate) -> None:
    print(
        f"{label:<40}: {rate.per_s:9,.0f} events/s ({rate.per_s / raw.per_s:5.2f} x raw),"
        f" {rate.per_cpu_s:9,.0f} per CPU-second ({rate.per_cpu_s / raw.per_cpu_s:5.2f} x raw)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--wallets", type=int, default=1_000)
    parser.add_argument("--skip-worker", action="store_true", help="raw and handlers only")
    parser.add_argument(
        "--models-dir",
        type=Path,
        help="a model registry (STREAMS_MODELS_DIR): its champion scores (default: the online "
        "scorer, as without a registry)",
    )
    args = parser.parse_args()
    servers = bootstrap()
    prefix = f"bench-streams-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-in", f"{prefix}-raw-out", f"{prefix}-screened-out"]
    names += [f"{prefix}-pass-in", f"{prefix}-pass-out"]
    admin = AdminClient({"bootstrap.servers": servers})
    new = [NewTopic(n, PARTITIONS, 1) for n in names + worker_topics(prefix)]
    for future in admin.create_topics(new).values():
        future.result(30)
    try:
        wallets = [uuid.uuid4() for _ in range(args.wallets)]
        items = requests(args.events, wallets, seed=7)
        print(f"{args.events} TransactionRequested over {args.wallets} wallets, 8 partitions")
        fill(servers, names[0], items)
        raw = run_raw(servers, names[0], names[1], args.events)
        show("raw confluent-kafka consume+produce", raw, raw)
        handlers = run_screening(
            servers, names[0], names[2], args.events, args.wallets, args.models_dir
        )
        show("handlers in a plain loop (no faust)", handlers, raw)
        if not args.skip_worker:
            passthrough = run_passthrough(servers, prefix, items)
            show("faust pass-through (no state, no logic)", passthrough, raw)
            worker = run_worker(servers, prefix, items, wallets, args.models_dir)
            show("stream worker (faust, RocksDB tables)", worker, raw)
            for label, value in (("wall", worker.per_s), ("CPU", worker.per_cpu_s)):
                verdict = "met" if value >= TARGET_PER_S else "NOT met"
                print(f"target >= {TARGET_PER_S:,} events/s on one worker ({label}): {verdict}")
    finally:
        mine = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
        for future in admin.delete_topics(mine).values() if mine else ():
            try:
                future.result(30)
            except Exception:  # noqa: BLE001 - best effort clean-up
                pass


if __name__ == "__main__":
    main()

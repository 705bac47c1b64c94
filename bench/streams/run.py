"""bench/streams: the stream worker (quix-streams, exactly once) beside a raw confluent-kafka
loop, in one run: events/s, events per CPU-second, how the rate holds as wallets age, and
the stage's latency at 1,000 requests/s.

    .venv/bin/python -m bench.streams.run [--events 20000] [--models-dir DIR]

Needs Kafka: ``KAFKA_BOOTSTRAP`` from the environment or ``.local/stack.env`` (``walletpipe
up``). Every phase runs on private topics (``bench-streams-<id>-*``, 8 partitions), deleted
at the end, so a running pipeline on the same broker is not disturbed.

* **raw**: confluent-kafka consumes the requests in batches and produces each value again
  (linger), nothing else: the ceiling of this machine's Kafka path in Python.
* **worker, young wallets / aged wallets**: the real worker (``python -m streams.app``, one
  process, exactly once, its RocksDB state and changelog) on ``--events`` requests waiting
  on its input, with full logic: the registry's champion forest (``--models-dir``, or one
  trained first on simulated history), the challengers in shadow, the default KYC limits on
  half the requests, the reservation, terminal features and counts. Young: the requests
  spread over wallets 20 each; aged: 1,000 each (a wallet's state must not grow with its
  history, so the rate must hold). Measured from the first decision out to the last, with
  the worker process's CPU time (all its threads) over the same span.
* **latency**: a fresh worker fed 1,000 requests/s for ``--latency-s`` seconds; each
  request's time from its produce call to its decision read by a read-committed consumer
  (a decision is readable once the Kafka transaction carrying it commits:
  ``STREAMS_COMMIT_INTERVAL_MS``).

Targets (issue 11): >= 5,000 events/s wall and >= 8,000 per CPU-second on one worker;
aged rate >= 0.9 x young; p99 <= 100 ms at 1,000/s. It prints the load average with the
figures, and its last line is one JSON object. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from domain import records
from domain.limits import KycStatus
from domain.topics import (
    LEDGER_COMMANDS,
    REVIEWS_REQUESTED,
    TERMINAL_COUNTS,
    TRANSACTIONS_REJECTED,
    TRANSACTIONS_REQUESTED,
    WALLET_COMMANDS,
)
from domain.transactions import TransactionType

PARTITIONS = 8
BATCH_MAX = 5000
LINGER_MS = 20
REPO = Path(__file__).resolve().parents[2]
WORKER_TOPICS = (
    WALLET_COMMANDS,
    LEDGER_COMMANDS,
    TRANSACTIONS_REJECTED,
    REVIEWS_REQUESTED,
    TRANSACTIONS_REQUESTED,
    TERMINAL_COUNTS,
)
#: Every request leaves the stream on one of these.
DECISIONS = (LEDGER_COMMANDS, TRANSACTIONS_REJECTED, REVIEWS_REQUESTED)
RUN_TIMEOUT_S = 900.0
FUNDING = Decimal("10000000")
#: POS terminals the requests are spread over (the demo has 8 merchants with a few each).
TERMINALS = 50


@dataclass(frozen=True)
class Rate:
    """Events through a stage: per wall second, and per second of the stage's own CPU."""

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
            "enable.idempotence": True,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def requests(count: int, wallets: list[uuid.UUID], seed: int) -> list[records.TransactionRequested]:
    """Payments at POS terminals, round-robin over the wallets (each wallet's history grows
    evenly), half of them from users whose KYC is pending (default limits apply)."""
    rng = random.Random(seed)
    client, shop = uuid.uuid4(), uuid.uuid4()
    out = []
    for i in range(count):
        amount = Decimal(rng.randrange(100, 5000)) / 100
        out.append(
            records.TransactionRequested(
                transaction_id=uuid.uuid4(),
                transaction_type=TransactionType.PAYMENT,
                source_wallet_id=wallets[i % len(wallets)],
                destination_wallet_id=shop,
                amount=amount,
                fee_amount=Decimal(0),
                total_amount=amount,
                currency_code="USD",
                client_id=client,
                idempotency_key=f"bench-{i}",
                metadata={"channel": "POS", "terminal_id": f"T{rng.randrange(TERMINALS)}"},
                requested_at=datetime.now(UTC),
                kyc_status=KycStatus.VERIFIED if i % 2 else KycStatus.PENDING,
            )
        )
    return out


def funding(wallets: list[uuid.UUID]) -> list[records.WalletCredited]:
    return [
        records.WalletCredited(
            wallet_id=w, transaction_id=uuid.uuid4(), amount=FUNDING, currency_code="USD"
        )
        for w in wallets
    ]


def fill(servers: str, topic: str, items: list) -> None:  # type: ignore[type-arg]
    out = producer(servers)
    for item in items:
        out.produce(topic, key=item.partition_key, value=records.encode(item))
        out.poll(0)
    out.flush(60)


def reader(servers: str, topics: list[str]) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"bench-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 5,
        }
    )
    consumer.subscribe(topics)
    return consumer


def run_raw(servers: str, source: str, target: str, total: int) -> Rate:
    out, consumer = producer(servers), reader(servers, [source])
    seen, started, cpu_started = 0, 0.0, 0.0
    try:
        while seen < total:
            batch = [m for m in consumer.consume(BATCH_MAX, timeout=1) if m.error() is None]
            if batch and not seen:
                started, cpu_started = time.perf_counter(), time.process_time()
            for message in batch:
                out.produce(target, key=message.key(), value=message.value())
            out.poll(0)
            seen += len(batch)
        out.flush(60)
        return Rate(total, time.perf_counter() - started, time.process_time() - cpu_started)
    finally:
        consumer.close()


class Worker:
    """``python -m streams.app`` on a private set of topics."""

    def __init__(self, servers: str, prefix: str, models_dir: Path, admin: AdminClient) -> None:
        self.servers, self.prefix = servers, prefix
        new = [NewTopic(prefix + spec.name, PARTITIONS, 1) for spec in WORKER_TOPICS]
        new.append(NewTopic(prefix + WALLET_COMMANDS.dead_letter, 1, 1))
        for future in admin.create_topics(new).values():
            future.result(30)
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-streams-"))
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": servers,
            "STREAMS_TOPIC_PREFIX": prefix,
            "STREAMS_APP_ID": prefix + "app",
            "STREAMS_DATA_DIR": str(self.workdir / "data"),
            "STREAMS_MODELS_DIR": str(models_dir.resolve()),
            "STREAMS_LOG_LEVEL": "warn",
        }
        self.process: subprocess.Popen | None = None  # type: ignore[type-arg]

    def topic(self, name: str) -> str:
        return self.prefix + name

    def start(self) -> None:
        self.log = (self.workdir / "worker.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.app"],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )

    def cpu_s(self) -> float:
        assert self.process is not None
        if self.process.poll() is not None:
            raise SystemExit(f"the worker died; see {self.workdir}/worker.log")
        return process_cpu_s(self.process.pid)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def decisions_of(worker: Worker) -> Consumer:
    return reader(worker.servers, [worker.topic(spec.name) for spec in DECISIONS])


def run_backlog(worker: Worker, items: list[records.TransactionRequested]) -> Rate:
    """The requests wait on the input; the worker starts and works them off."""
    fill(worker.servers, worker.topic(WALLET_COMMANDS.name), items)
    consumer = decisions_of(worker)
    worker.start()
    seen, started, cpu_started = 0, 0.0, 0.0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while seen < len(items):
            if time.monotonic() > deadline:
                raise SystemExit(f"worker: {seen} of {len(items)} decisions in time")
            batch = [m for m in consumer.consume(BATCH_MAX, timeout=0.5) if m.error() is None]
            if batch and not seen:
                started, cpu_started = time.perf_counter(), worker.cpu_s()
            seen += len(batch)
            if not batch:
                worker.cpu_s()  # fails loudly if the worker died
        return Rate(seen, time.perf_counter() - started, worker.cpu_s() - cpu_started)
    finally:
        consumer.close()


def run_latency(
    worker: Worker, items: list[records.TransactionRequested], per_s: int
) -> list[float]:
    """Produce ``per_s`` requests a second; each one's milliseconds until its decision is
    read (read committed)."""
    consumer = decisions_of(worker)
    worker.start()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    read_count = [0]
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            for message in consumer.consume(1000, timeout=0.1):
                if message.error() is None:
                    at = time.perf_counter()
                    read_count[0] += 1
                    start = sent.pop(orjson.loads(message.value())["transaction_id"], None)
                    if start is not None:
                        latencies.append((at - start) * 1000)

    warm = items[:200]  # the worker is up and its partitions assigned before the clock runs
    fill(worker.servers, worker.topic(WALLET_COMMANDS.name), warm)
    consumer_thread = threading.Thread(target=read, daemon=True)
    consumer_thread.start()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while read_count[0] < len(warm) and worker.cpu_s() >= 0:
        if time.monotonic() > deadline:
            raise SystemExit("latency: the worker did not decide the warm-up requests")
        time.sleep(0.2)
    out = Producer(
        {
            "bootstrap.servers": worker.servers,
            "linger.ms": 0,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
        }
    )
    topic, started = worker.topic(WALLET_COMMANDS.name), time.perf_counter()
    for n, item in enumerate(items[len(warm) :]):
        pause = started + n / per_s - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        sent[str(item.transaction_id)] = time.perf_counter()
        out.produce(topic, key=item.partition_key, value=records.encode(item))
        out.poll(0)
    out.flush(30)
    deadline = time.monotonic() + 60
    while sent and time.monotonic() < deadline:
        time.sleep(0.1)
    done.set()
    consumer_thread.join(5)
    consumer.close()
    return latencies


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def champion_registry(folder: Path) -> Path:
    """A registry with a champion forest trained on 22 days of simulated history (what
    ``walletpipe demo --train-model`` does)."""
    data, registry = folder / "sim.parquet", folder / "registry"
    walletpipe = [sys.executable, "-m", "walletpipe.cli"]
    simulate = [*walletpipe, "simulate", "--out", str(data), "--days", "22", "--users", "100"]
    subprocess.run([*simulate, "--merchants", "8"], cwd=REPO, check=True, capture_output=True)
    env = {**os.environ, "WALLETPIPE_MODELS_DIR": str(registry)}
    train = [*walletpipe, "models", "train", "--data", str(data)]
    subprocess.run(train, cwd=REPO, env=env, check=True, capture_output=True)
    return registry


def show(label: str, rate: Rate, raw: Rate) -> None:
    print(
        f"{label:<44}: {rate.per_s:9,.0f} events/s ({rate.per_s / raw.per_s:5.2f} x raw),"
        f" {rate.per_cpu_s:9,.0f} per CPU-second ({rate.per_cpu_s / raw.per_cpu_s:5.2f} x raw)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--latency-s", type=int, default=15)
    parser.add_argument("--models-dir", type=Path, help="a registry with a champion")
    args = parser.parse_args()
    servers, load_before = bootstrap(), os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="bench-streams-models-"))
    models_dir = args.models_dir or champion_registry(scratch)
    run_id = f"bench-streams-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": servers})
    workers: list[Worker] = []

    def worker(phase: str) -> Worker:
        workers.append(Worker(servers, f"{run_id}-{phase}-", models_dir, admin))
        return workers[-1]

    try:
        raw_in, raw_out = f"{run_id}-raw-in", f"{run_id}-raw-out"
        for future in admin.create_topics(
            [NewTopic(raw_in, PARTITIONS, 1), NewTopic(raw_out, PARTITIONS, 1)]
        ).values():
            future.result(30)
        young_wallets = [uuid.uuid4() for _ in range(max(1, args.events // 20))]
        aged_wallets = [uuid.uuid4() for _ in range(max(1, args.events // 1000))]
        young = requests(args.events, young_wallets, seed=7)
        print(
            f"{args.events} requests; young: {len(young_wallets)} wallets x 20, aged: "
            f"{len(aged_wallets)} wallets x 1,000; 8 partitions; load {load_before}",
            flush=True,
        )
        fill(servers, raw_in, young)
        raw = run_raw(servers, raw_in, raw_out, args.events)
        show("raw confluent-kafka consume+produce", raw, raw)
        rates: dict[str, Rate] = {}
        for phase, wallets, seed in (("young", young_wallets, 7), ("aged", aged_wallets, 8)):
            w = worker(phase)
            fill(servers, w.topic(WALLET_COMMANDS.name), funding(wallets))
            rates[phase] = run_backlog(w, requests(args.events, wallets, seed))
            w.stop()
            per = "20" if phase == "young" else "1,000"
            show(f"stream worker, {per} requests per wallet", rates[phase], raw)
        lat = worker("latency")
        wallets = [uuid.uuid4() for _ in range(1000)]
        fill(servers, lat.topic(WALLET_COMMANDS.name), funding(wallets))
        latencies = run_latency(lat, requests(200 + 1000 * args.latency_s, wallets, 9), 1000)
        lat.stop()
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        print(
            f"latency at 1,000 requests/s, produced -> decision read (read committed): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(latencies)} requests",
            flush=True,
        )
        result = {
            "worker_events_per_s": round(rates["young"].per_s),
            "worker_events_per_cpu_s": round(rates["young"].per_cpu_s),
            "aged_events_per_s": round(rates["aged"].per_s),
            "aged_events_per_cpu_s": round(rates["aged"].per_cpu_s),
            "aged_rate_ratio": round(rates["aged"].per_cpu_s / rates["young"].per_cpu_s, 3),
            "aged_wall_rate_ratio": round(rates["aged"].per_s / rates["young"].per_s, 3),
            "stage_p50_ms": round(p50, 1),
            "stage_p99_ms": round(p99, 1),
            "raw_events_per_s": round(raw.per_s),
            "raw_events_per_cpu_s": round(raw.per_cpu_s),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
        targets: dict[str, Callable[[], bool]] = {
            "wall >= 5,000 events/s": lambda: rates["young"].per_s >= 5000,
            "per CPU-second >= 8,000": lambda: rates["young"].per_cpu_s >= 8000,
            "aged ratio >= 0.9": lambda: result["aged_rate_ratio"] >= 0.9,  # type: ignore[operator]
            "p99 <= 100 ms at 1,000/s": lambda: p99 <= 100,
        }
        for name, met in targets.items():
            print(f"target {name}: {'met' if met() else 'NOT met'}")
        print(json.dumps(result))
    finally:
        for w in workers:
            w.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        mine = [t for t in admin.list_topics(timeout=30).topics if t.startswith(run_id)]
        mine += [t for t in admin.list_topics(timeout=30).topics if f"--{run_id}" in t]
        for future in admin.delete_topics(mine).values() if mine else ():
            try:
                future.result(30)
            except Exception:  # noqa: BLE001 - best effort clean-up
                pass


if __name__ == "__main__":
    main()

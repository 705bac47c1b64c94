"""bench/kafka: what the broker spends per transaction under each client batching profile,
the pipeline's hops without the pipeline's work.

    .venv/bin/python -m bench.kafka.run [--rates 50,300,1000] [--seconds 20]

A broker of its own (``.local/bench-kafka``, the stack's server.properties and port) carries
a chain shaped like a transaction's way through the pipeline: a producer sends ``rate``
records a second (800-byte JSON, keyed by one of 2,000 wallets, 8 partitions) to hop 0;
two relays each consume a hop and produce every record to the next (the stream, the
ledger); a consumer at the end waits for it (the caller's answer), and a bulk reader reads
every hop (analytics). Each profile runs the same load in turn:

- ``before``: the clients as the services had them (librdkafka's fetch defaults: a fetch
  answered at the first byte; lz4 producers lingering 5 ms);
- ``after``: ``domain.kafka_clients`` (hot-path fetches wait up to 10 ms for 16 KB, the
  bulk reader up to 0.5 s for 1 MB; uncompressed producers lingering 5 ms).

Per profile and rate: the broker's CPU ms per transaction (one record through the chain:
3 produced, 3 hot-path fetched, 3 bulk-read) from /proc, by thread group, and the chain's
end-to-end p50/p99. The broker's CPU is what the issue's target (0.3 ms per transaction)
is about; the clients' own CPU is not measured here (bench/e2e has it per service). The
last line is one JSON object. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.proctree import load_average, threads_cpu_s, trees_cpu_s
from domain.kafka_clients import batching_producer, bulk_consumer, hot_path_consumer
from infra import kafka
from infra.kafka import new_cluster_id
from infra.settings import StackSettings

REPO = Path(__file__).resolve().parents[2]
HOPS = 3
PARTITIONS = 8
WALLETS = 2_000
PAYLOAD_PAD = "x" * 640

PROFILES: dict[str, dict[str, dict[str, object]]] = {
    "before": {
        "producer": {"linger.ms": 5, "compression.type": "lz4"},
        "hot": {},
        "bulk": {},
    },
    "after": {
        "producer": batching_producer(),
        "hot": hot_path_consumer(),
        "bulk": bulk_consumer(),
    },
}


def producer(bootstrap: str, profile: dict) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            **profile["producer"],
        }
    )


def consumer(bootstrap: str, group: str, extra: dict, topics: list[str]) -> Consumer:
    made = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "latest",
            "enable.auto.commit": True,
            "isolation.level": "read_committed",
            **extra,
        }
    )
    made.subscribe(topics)
    return made


def relay(bootstrap: str, run: str, profile: dict, hop: int, stop: threading.Event) -> None:
    """Consume hop ``hop`` and produce each record to hop + 1, as a service would."""
    source = consumer(bootstrap, f"{run}-relay-{hop}", profile["hot"], [f"{run}.hop{hop}"])
    sink = producer(bootstrap, profile)
    try:
        while not stop.is_set():
            for message in source.consume(500, timeout=0.05):
                if message.error() is None:
                    sink.produce(f"{run}.hop{hop + 1}", key=message.key(), value=message.value())
            sink.poll(0)
    finally:
        sink.flush(10)
        source.close()


def answers(
    bootstrap: str, run: str, profile: dict, stop: threading.Event, latencies: list[float]
) -> None:
    """The end of the chain: each record's age when it arrives."""
    end = consumer(bootstrap, f"{run}-answers", profile["hot"], [f"{run}.hop{HOPS}"])
    try:
        while not stop.is_set():
            for message in end.consume(500, timeout=0.05):
                if message.error() is None:
                    sent = json.loads(message.value())["sent"]
                    latencies.append(1000 * (time.time() - sent))
    finally:
        end.close()


def bulk_reader(bootstrap: str, run: str, profile: dict, stop: threading.Event) -> None:
    reader = consumer(
        bootstrap,
        f"{run}-bulk",
        profile["bulk"],
        [f"{run}.hop{hop}" for hop in range(1, HOPS + 1)],
    )
    try:
        while not stop.is_set():
            reader.consume(2_000, timeout=0.1)
    finally:
        reader.close()


def run_one(
    bootstrap: str, broker_pid: int, name: str, rate: float, seconds: float, warmup_s: float
) -> dict:
    profile = PROFILES[name]
    run = f"bench-{name}-{int(rate)}-{os.getpid()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(f"{run}.hop{h}", PARTITIONS, 1) for h in range(1, HOPS + 1)]
    for future in admin.create_topics(topics).values():
        future.result(timeout=60)
    stop = threading.Event()
    latencies: list[float] = []
    threads = [
        threading.Thread(target=relay, args=(bootstrap, run, profile, h, stop))
        for h in range(1, HOPS)
    ]
    threads.append(
        threading.Thread(target=answers, args=(bootstrap, run, profile, stop, latencies))
    )
    threads.append(threading.Thread(target=bulk_reader, args=(bootstrap, run, profile, stop)))
    for thread in threads:
        thread.start()
    time.sleep(5)  # the consumers join their groups
    source = producer(bootstrap, profile)
    rng = random.Random(7)
    total = int(rate * (warmup_s + seconds))
    started = time.monotonic()
    before: tuple[float, dict[str, float]] | None = None
    for i in range(total):
        if i == int(rate * warmup_s):
            latencies.clear()
            before = (trees_cpu_s({"kafka": [broker_pid]})["kafka"], threads_cpu_s([broker_pid]))
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        key = str(rng.randrange(WALLETS)).encode()
        value = json.dumps({"sent": time.time(), "i": i, "pad": PAYLOAD_PAD}).encode()
        source.produce(f"{run}.hop1", key=key, value=value)
        source.poll(0)
    source.flush(10)
    time.sleep(1.0)  # the last records through the chain
    after = (trees_cpu_s({"kafka": [broker_pid]})["kafka"], threads_cpu_s([broker_pid]))
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert before is not None
    measured = int(rate * seconds)
    by_thread = {
        group: round(1000 * (spent - before[1].get(group, 0.0)) / measured, 3)
        for group, spent in after[1].items()
    }
    busiest = dict(sorted(by_thread.items(), key=lambda item: -item[1])[:6])
    latencies.sort()
    return {
        "profile": name,
        "rate_per_s": rate,
        "broker_cpu_ms_per_tx": round(1000 * (after[0] - before[0]) / measured, 3),
        "broker_threads_ms_per_tx": busiest,
        "received": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(latencies[int(0.99 * len(latencies))], 1) if latencies else None,
        "load_average": load_average(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,300,1000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--profiles", default="before,after")
    parser.add_argument("--local-dir", type=Path, default=REPO / ".local" / "bench-kafka")
    args = parser.parse_args(argv)
    settings = StackSettings()
    local_dir = args.local_dir.resolve()
    shutil.rmtree(local_dir / "kafka" / "data", ignore_errors=True)
    port, controller_port = settings.kafka_port_base, settings.kafka_port_base + 1
    cluster_id = new_cluster_id()
    pid = kafka.start(local_dir, port, controller_port, cluster_id, settings)
    rows = []
    try:
        kafka.wait_ready(local_dir, port, settings, cluster_id)
        bootstrap = f"127.0.0.1:{port}"
        for rate in (float(r) for r in args.rates.split(",")):
            for name in args.profiles.split(","):
                row = run_one(bootstrap, pid, name, rate, args.seconds, args.warmup_s)
                print(
                    f"{name:<7} {rate:>6g}/s: broker {row['broker_cpu_ms_per_tx']} ms/tx, "
                    f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
                    f"received {row['received']}, load {row['load_average']}\n"
                    f"        {row['broker_threads_ms_per_tx']}",
                    flush=True,
                )
                rows.append(row)
    finally:
        kafka.stop(local_dir, settings)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()

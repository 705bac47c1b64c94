"""bench/streams: events/s through the screening stage against a raw consume-and-produce of
the same records, in the same run, on one process.

    .venv/bin/python -m bench.streams.run [--events 50000] [--wallets 1000]

Needs Kafka: ``KAFKA_BOOTSTRAP`` from the environment or ``.local/stack.env`` (``walletpipe
up``). It creates private topics (``bench-streams-<id>-*``, 8 partitions) and deletes them.

* **raw**: confluent-kafka consumes the requests in batches and produces each value again
  (linger), nothing else: the ceiling of this machine's Kafka path.
* **screening**: the same consume/produce loop, and per record the stream's own pure
  handlers: decode, limits (KYC defaults), features + score (``models.simple``, river
  HalfSpaceTrees: scoring on), policy, reservation, encode. Batches are grouped by
  partition, so state stays per wallet partition as in the faust agents.

Target (issue 4): >= 5,000 events/s on one worker. Not a test: it prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from domain import records
from domain.limits import KycStatus
from domain.transactions import TransactionType
from models.simple import RulesAndTrees
from streams.decision import FeatureState, Policy, assess, observe
from streams.limits import DefaultLimits, LimitSet, LimitUsage, applicable
from streams.screening import screen
from streams.settings import DEFAULT_LIMITS_JSON
from streams.wallet_state import WalletState

PARTITIONS = 8
BATCH_MAX = 5000
LINGER_MS = 20
REPO = Path(__file__).resolve().parents[2]


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


def consume_all(servers: str, topic: str, total: int, handle_batch) -> float:  # type: ignore[no-untyped-def]
    """Consume ``total`` records in batches, hand each batch to ``handle_batch``; seconds."""
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
    started = None
    try:
        while seen < total:
            batch = [m for m in consumer.consume(BATCH_MAX, timeout=1) if m.error() is None]
            if not batch:
                continue
            started = started or time.perf_counter()
            handle_batch(batch)
            seen += len(batch)
        handle_batch(None)  # flush
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        consumer.close()


def run_raw(servers: str, source: str, target: str, total: int) -> float:
    out = producer(servers)

    def handle(batch) -> None:  # type: ignore[no-untyped-def]
        if batch is None:
            out.flush(60)
            return
        for message in batch:
            out.produce(target, key=message.key(), value=message.value())
        out.poll(0)

    return total / consume_all(servers, source, total, handle)


def run_screening(servers: str, source: str, target: str, total: int, wallets: int) -> float:
    out = producer(servers)
    states: dict[bytes, WalletState] = {}
    usage: dict[bytes, LimitUsage] = defaultdict(LimitUsage)
    history: dict[bytes, FeatureState] = defaultdict(FeatureState)
    scorer, policy = RulesAndTrees(seed=1), Policy()
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
                features = history[key]
                assessment = assess(request, features, scorer, policy)
                limits = applicable(request, no_limits, defaults)
                outcome = screen(request, state_of(key), limits, usage[key], assessment)
                if isinstance(outcome.command, records.PostTransaction):
                    observe(request, features)
                if outcome.command is not None:
                    out.produce(target, key=key, value=records.encode(outcome.command))
            out.poll(0)

    return total / consume_all(servers, source, total, handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--wallets", type=int, default=1_000)
    args = parser.parse_args()
    servers = bootstrap()
    prefix = f"bench-streams-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-in", f"{prefix}-raw-out", f"{prefix}-screened-out"]
    admin = AdminClient({"bootstrap.servers": servers})
    for future in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        future.result(30)
    try:
        wallets = [uuid.uuid4() for _ in range(args.wallets)]
        print(f"producing {args.events} TransactionRequested over {args.wallets} wallets ...")
        fill(servers, names[0], requests(args.events, wallets, seed=7))
        raw = run_raw(servers, names[0], names[1], args.events)
        screened = run_screening(servers, names[0], names[2], args.events, args.wallets)
        print(f"raw confluent-kafka consume+produce : {raw:10,.0f} events/s")
        print(f"screening stage (scoring on)        : {screened:10,.0f} events/s")
        print(f"ratio screening / raw               : {screened / raw:10.2f}")
        print(f"target >= 5,000 events/s            : {'met' if screened >= 5000 else 'NOT met'}")
    finally:
        for future in admin.delete_topics(names).values():
            try:
                future.result(30)
            except Exception:  # noqa: BLE001 - best effort clean-up
                pass


if __name__ == "__main__":
    main()

"""``walletpipe simulate``: POS and app traffic against the real API, with its outcome.

Creates users, wallets and merchants, funds the wallets, then sends an open-loop mix at the
asked rate: POS payments to merchants, app transfers, withdrawals, deposits and deliberate
overdrafts. Outcomes are read from the pipeline's own topics (``ledger.events`` and
``transactions.rejected``), so accept→complete latency is measured without polling the API.
Seeded: the same seed sends the same traffic.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from domain import records
from domain.exceptions import RecordDecodeError
from domain.topics import LEDGER_EVENTS, TRANSACTIONS_REJECTED

IN_FLIGHT_MAX = 256
SETTLE_WAIT_S = 60.0


@dataclass
class Outcomes:
    """What happened to each accepted transaction, filled from the topics by a thread."""

    accepted_at: dict[str, float] = field(default_factory=dict)
    finished: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self, transaction_id: str) -> None:
        with self.lock:
            self.accepted_at[transaction_id] = time.monotonic()

    def finish(self, transaction_id: str, status: str, reason: str) -> None:
        with self.lock:
            self.finished.setdefault(transaction_id, (status, reason, time.monotonic()))

    def open_count(self) -> int:
        with self.lock:
            return sum(1 for t in self.accepted_at if t not in self.finished)


def watch_outcomes(
    bootstrap: str, outcomes: Outcomes, stop: threading.Event, ready: threading.Event
) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"simulate-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    partitions = []
    for topic in (LEDGER_EVENTS.name, TRANSACTIONS_REJECTED.name):
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions += [TopicPartition(topic, p, OFFSET_END) for p in metadata.partitions]
    consumer.assign(partitions)
    consumer.consume(1, timeout=1.0)  # resolves the end offsets before traffic starts
    ready.set()
    try:
        while not stop.is_set():
            for message in consumer.consume(1000, timeout=0.2):
                if message.error():
                    continue
                try:
                    record = records.decode_transaction_record(message.value())
                except RecordDecodeError:
                    continue
                if isinstance(record, records.TransactionPosted):
                    outcomes.finish(str(record.transaction_id), "COMPLETED", "")
                elif isinstance(record, (records.TransactionRejected, records.TransactionFailed)):
                    outcomes.finish(str(record.transaction_id), "FAILED", record.reason_code)
    finally:
        consumer.close()


class Traffic:
    def __init__(self, client: aiohttp.ClientSession, outcomes: Outcomes, seed: int) -> None:
        self.client = client
        self.outcomes = outcomes
        self.rng = random.Random(seed)
        self.users: list[str] = []
        self.wallets: list[str] = []
        self.merchants: list[str] = []
        self.refused: dict[str, int] = {}
        self.sent = 0

    async def _post(self, path: str, body: dict, key: str | None = None) -> dict | None:
        headers = {"Idempotency-Key": key} if key else {}
        async with self.client.post(path, json=body, headers=headers) as answer:
            payload = await answer.json(content_type=None)
            if answer.status >= 400:
                code = payload.get("error", {}).get("code", str(answer.status))
                self.refused[code] = self.refused.get(code, 0) + 1
                return None
            return payload  # type: ignore[no-any-return]

    async def create_population(self, users: int, merchants: int) -> None:
        async def person(i: int, business: bool) -> str | None:
            # Identities are unique per run (a second run must not collide with the first);
            # everything about the traffic itself follows the seed.
            tag = uuid.uuid4()
            user = await self._post(
                "/v1/users",
                {
                    "email": f"{'shop' if business else 'user'}-{tag.hex[:16]}@example.com",
                    "phone_number": f"+1{tag.int % 10**12:012d}",
                    "password": "correct horse battery",
                    "first_name": "Sim",
                    "last_name": f"{'Shop' if business else 'User'}{i}",
                    "date_of_birth": "1990-01-01",
                },
            )
            if user is None:
                return None
            wallet = await self._post(
                "/v1/wallets",
                {
                    "user_id": user["user_id"],
                    "currency_code": "USD",
                    "wallet_type": "BUSINESS" if business else "PRIMARY",
                },
            )
            return None if wallet is None else wallet["wallet_id"]

        made = await asyncio.gather(
            *[person(i, False) for i in range(users)], *[person(i, True) for i in range(merchants)]
        )
        self.wallets = [w for w in made[:users] if w]
        self.merchants = [w for w in made[users:] if w]
        if not self.wallets or not self.merchants:
            raise RuntimeError(f"could not create the population; API refused: {self.refused}")

    async def submit(self, body: dict) -> None:
        self.sent += 1
        answer = await self._post("/v1/transactions", body, key=str(uuid.uuid4()))
        if answer is not None:
            self.outcomes.accepted(answer["transaction_id"])

    def opening_balance(self) -> Decimal:
        """Enough that only the deliberate overdrafts fail in a normal run."""
        return Decimal(self.rng.randrange(5_000, 20_000))

    def deposit(self, wallet: str, amount: Decimal) -> dict:
        return {
            "transaction_type": "DEPOSIT",
            "destination_wallet_id": wallet,
            "amount": str(amount),
            "currency_code": "USD",
            "metadata": {"channel": "BANK"},
        }

    def next_request(self) -> dict:
        rng = self.rng
        wallet = rng.choice(self.wallets)
        amount = Decimal(rng.randrange(100, 10_000)) / 100
        roll = rng.random()
        if roll < 0.55:
            return {
                "transaction_type": "PAYMENT",
                "source_wallet_id": wallet,
                "destination_wallet_id": rng.choice(self.merchants),
                "amount": str(amount),
                "currency_code": "USD",
                "description": "POS purchase",
                "metadata": {"channel": "POS", "terminal_id": f"T{rng.randrange(50):03d}"},
            }
        if roll < 0.75:
            other = rng.choice([w for w in self.wallets if w != wallet] or self.merchants)
            return {
                "transaction_type": "TRANSFER",
                "source_wallet_id": wallet,
                "destination_wallet_id": other,
                "amount": str(amount),
                "currency_code": "USD",
                "metadata": {"channel": "APP"},
            }
        if roll < 0.85:
            return {
                "transaction_type": "WITHDRAWAL",
                "source_wallet_id": wallet,
                "amount": str(amount),
                "currency_code": "USD",
                "metadata": {"channel": "ATM"},
            }
        if roll < 0.95:
            return self.deposit(wallet, amount * 3)
        # A deliberate overdraft: far more than any simulated wallet holds.
        return {
            "transaction_type": "PAYMENT",
            "source_wallet_id": wallet,
            "destination_wallet_id": rng.choice(self.merchants),
            "amount": "250000.00",
            "currency_code": "USD",
            "metadata": {"channel": "WEB"},
        }


_last_line_at = [0.0]
LOG_PROGRESS_EVERY_S = 5.0


def _progress(label: str, done: int, total: int, extra: str) -> None:
    """A bar redrawn in place on a terminal; a line every few seconds in a log or CI."""
    width = 30
    filled = int(width * done / max(total, 1))
    bar = f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {extra}"
    if sys.stdout.isatty():
        sys.stdout.write(f"\r{bar}")
    elif done >= total or time.monotonic() - _last_line_at[0] >= LOG_PROGRESS_EVERY_S:
        _last_line_at[0] = time.monotonic()
        sys.stdout.write(f"{bar}\n")
    sys.stdout.flush()


async def run_simulation(
    ingest_url: str,
    api_key: str,
    bootstrap: str,
    tps: int,
    seconds: int,
    users: int = 100,
    merchants: int = 8,
    seed: int = 7,
) -> dict:
    outcomes = Outcomes()
    stop, ready = threading.Event(), threading.Event()
    watcher = threading.Thread(
        target=watch_outcomes, args=(bootstrap, outcomes, stop, ready), daemon=True
    )
    watcher.start()
    ready.wait(timeout=30)
    # aiohttp's client costs a fraction of httpx's CPU: on a 2-core box the load generator
    # must not starve the system it measures.
    async with aiohttp.ClientSession(
        base_url=ingest_url,
        headers={"X-API-Key": api_key},
        timeout=aiohttp.ClientTimeout(total=30),
        connector=aiohttp.TCPConnector(limit=64),
    ) as client:
        traffic = Traffic(client, outcomes, seed)
        print(f"creating {users} customers and {merchants} merchants ...")
        await traffic.create_population(users, merchants)
        print("funding wallets ...")
        await asyncio.gather(
            *[
                traffic.submit(traffic.deposit(w, traffic.opening_balance()))
                for w in traffic.wallets
            ]
        )
        total = tps * seconds
        in_flight = asyncio.Semaphore(IN_FLIGHT_MAX)
        tasks = []

        async def one(body: dict) -> None:
            async with in_flight:
                await traffic.submit(body)

        started = time.monotonic()
        for i in range(total):
            delay = started + i / tps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(traffic.next_request())))
            if i % max(1, tps // 4) == 0:
                _progress("sending ", i, total, f"completed {len(outcomes.finished)}")
        await asyncio.gather(*tasks)
        send_s = time.monotonic() - started
        _progress("sending ", total, total, f"in {send_s:.1f}s")
        print()
        deadline = time.monotonic() + SETTLE_WAIT_S
        while outcomes.open_count() and time.monotonic() < deadline:
            _progress("settling", len(outcomes.finished), len(outcomes.accepted_at), "")
            await asyncio.sleep(0.25)
        _progress("settling", len(outcomes.finished), len(outcomes.accepted_at), "")
        print()
    stop.set()
    watcher.join(timeout=5)
    return summarize(outcomes, traffic, send_s)


def summarize(outcomes: Outcomes, traffic: Traffic, send_s: float) -> dict:
    with outcomes.lock:
        finished = dict(outcomes.finished)
        accepted = dict(outcomes.accepted_at)
    latencies = sorted((finished[t][2] - accepted[t]) * 1000 for t in accepted if t in finished)
    reasons: dict[str, int] = {}
    for status, reason, _at in finished.values():
        if status == "FAILED":
            reasons[reason] = reasons.get(reason, 0) + 1

    def pct(p: float) -> float | None:
        return (
            round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)
            if latencies
            else None
        )

    return {
        "sent": traffic.sent,
        "accepted": len(accepted),
        "refused_by_api": traffic.refused,
        "completed": sum(1 for s, _r, _t in finished.values() if s == "COMPLETED"),
        "failed": sum(reasons.values()),
        "failed_by_reason": reasons,
        "still_pending": len(accepted) - len(finished),
        "accepted_per_s": round(len(accepted) / send_s, 1) if send_s else None,
        "latency_ms_p50": pct(0.50),
        "latency_ms_p99": pct(0.99),
    }


def format_summary(summary: dict) -> str:
    lines = ["", "simulation summary", "------------------"]
    for key, value in summary.items():
        lines.append(f"{key:>16}: {value}")
    return "\n".join(lines)

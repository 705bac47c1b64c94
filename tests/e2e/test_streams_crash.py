"""The stream worker under SIGKILL, rebalances and lost local state, with traffic flowing.

A second worker joins the running one (the same consumer group, its own state folder), so
the two share the wallet partitions. While requests flow through the API, the second
worker is killed with SIGKILL at random moments (``KILLS`` times: while deciding, while
committing, while recovering its state) and started again at once; every
``FRESH_EVERY``-th time its local state folder is deleted first, so it rebuilds its
partitions' state from the changelog topic. At the end it is stopped gracefully (the first
worker takes all the partitions back). Afterwards:

* every request has exactly one outcome (one SETTLED or one FAILED event) and none is
  left PENDING;
* ``walletpipe ledger verify`` passes;
* the stream's view of every wallet (from its changelog) equals the ledger's balance, with
  nothing reserved and no hold open: no reservation was doubled or lost.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from ledger_writer.verify import verify
from streams.store import WALLET, WalletValue
from tests.helpers import accepted, funded_wallet, sql, wait_final
from walletpipe.supervisor import Supervisor, services

WALLETS = 16
KILLS = 22
FRESH_EVERY = 5
CHANGELOG = "changelog__wallet-streams--wallet.commands--default"


def stream_wallets(bootstrap: str, wallets: list[str]) -> dict[str, WalletValue]:
    """The stream's latest value of each wallet, from its changelog (read committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    wanted = {f"{w}|".encode() + WALLET: w for w in wallets}
    try:
        metadata = consumer.list_topics(CHANGELOG, timeout=10).topics[CHANGELOG]
        ends, partitions = {}, []
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(CHANGELOG, p), timeout=10)
            if high > low:
                partitions.append(TopicPartition(CHANGELOG, p, low))
                ends[p] = high
        consumer.assign(partitions)
        latest: dict[str, WalletValue] = {}
        done: set[int] = set()
        deadline = time.monotonic() + 60
        while len(done) < len(ends) and time.monotonic() < deadline:
            for message in consumer.consume(5000, timeout=1):
                if message.error() is not None:
                    continue
                wallet = wanted.get(message.key())
                if wallet is not None and message.value() is not None:
                    latest[wallet] = WalletValue.decode(message.value())
                if message.offset() + 1 >= ends[message.partition()]:
                    done.add(message.partition())
        return latest
    finally:
        consumer.close()


class Load(threading.Thread):
    """Requests through the API until stopped: transfers, payments and withdrawals between
    the test's wallets (some overdraw and are refused by the stream)."""

    def __init__(self, running: dict[str, str], wallets: list[str], seed: int) -> None:
        super().__init__(name="load", daemon=True)
        self.running, self.wallets, self.rng = running, wallets, random.Random(seed)
        self.ids: list[str] = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(
                base_url=self.running["INGEST_URL"],
                timeout=30,
                headers={"X-API-Key": self.running["DEMO_API_KEY"]},
            ) as api:
                while not self.stop_event.is_set() and len(self.ids) < 2_000:
                    self.ids.append(accepted(api, self.body()))
                    time.sleep(self.rng.uniform(0.0, 0.06))
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error

    def body(self) -> dict[str, Any]:
        source, other = self.rng.sample(self.wallets, 2)
        kind = self.rng.choice(["TRANSFER", "TRANSFER", "PAYMENT", "WITHDRAWAL"])
        body: dict[str, Any] = {
            "transaction_type": kind,
            "source_wallet_id": source,
            "amount": f"{self.rng.randrange(500, 9000) / 100:.2f}",
            "currency_code": "USD",
        }
        if kind == "TRANSFER":
            body["destination_wallet_id"] = other
        return body


def test_sigkill_rebalances_and_lost_state_keep_every_invariant(
    api: httpx.Client, running: dict[str, str], stack_dir: Path
) -> None:
    counts = check_under_load(api, running, stack_dir, chaos=True)
    print(f"streams crash test: {counts}")
    assert counts["kills"] >= 20 and counts["fresh_state_restarts"] >= 4


def test_control_without_chaos(api: httpx.Client, running: dict[str, str], stack_dir: Path) -> None:
    check_under_load(api, running, stack_dir, chaos=False)


def check_under_load(
    api: httpx.Client, running: dict[str, str], stack_dir: Path, chaos: bool
) -> dict[str, int]:
    wallets = [funded_wallet(api, "400.00") for _ in range(WALLETS)]
    load = Load(running, wallets, seed=11 if chaos else 12)
    rng = random.Random(5)
    extra = Supervisor(
        running, stack_dir / "logs" / f"worker2-{uuid.uuid4().hex[:8]}" / "run", _repo_root()
    )
    data_dir = Path(extra.env["STREAMS_DATA_DIR"])
    streams_only = services(running, only={"streams"})
    counts = {"kills": 0, "fresh_state_restarts": 0}
    load.start()
    try:
        extra.start(streams_only)
        if chaos:
            for kill in range(1, KILLS + 1):
                time.sleep(rng.uniform(0.3, 3.0))  # deciding, committing or recovering
                child = extra.children["streams"]
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)
                counts["kills"] += 1
                if kill % FRESH_EVERY == 0:  # its local state is gone: the changelog has it
                    shutil.rmtree(data_dir, ignore_errors=True)
                    counts["fresh_state_restarts"] += 1
                extra.start(streams_only)
            time.sleep(8)  # the restarted worker takes its partitions and decides again
        else:
            time.sleep(20)
    finally:
        load.stop_event.set()
        load.join(timeout=60)
        extra.stop()  # graceful: the first worker takes every partition back
    assert load.error is None, load.error
    ids = load.ids
    counts["requests"] = len(ids)
    assert len(ids) > 100

    results = {t: wait_final(api, t, timeout_s=240) for t in ids}
    assert {r["status"] for r in results.values()} <= {"COMPLETED", "FAILED"}
    counts["completed"] = sum(r["status"] == "COMPLETED" for r in results.values())
    db = running["DATABASE_URL"]
    outcomes = sql(
        db,
        """SELECT transaction_id, count(*) FILTER (WHERE event_type = 'SETTLED'),
                  count(*) FILTER (WHERE event_type = 'FAILED')
             FROM transaction_events WHERE transaction_id = ANY(%s::uuid[])
            GROUP BY transaction_id""",
        (ids,),
    )
    assert len(outcomes) == len(ids)
    assert all(settled + failed == 1 for _t, settled, failed in outcomes), outcomes
    assert [r.name for r in verify(db) if not r.passed] == []

    ledger = {
        str(w): (available, reserved)
        for w, available, reserved in sql(
            db,
            """SELECT wallet_id, available_balance, reserved_balance FROM wallet_balances
                WHERE wallet_id = ANY(%s::uuid[])""",
            (wallets,),
        )
    }
    assert all(reserved == 0 for _available, reserved in ledger.values())
    deadline = time.monotonic() + 60
    while True:
        stream = stream_wallets(running["KAFKA_BOOTSTRAP"], wallets)
        mismatched = {
            w: (None if w not in stream else str(stream[w].state), str(ledger[w][0]))
            for w in wallets
            if w not in stream
            or stream[w].state.available != ledger[w][0]
            or stream[w].state.reserved != Decimal(0)
            or stream[w].state.holds_open != 0
        }
        if not mismatched or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert mismatched == {}
    return counts


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]

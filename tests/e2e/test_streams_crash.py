"""The stream processor under crashes and rebalances, with traffic flowing.

A second faust worker joins the running one (its own STREAMS_DATA_DIR; the same app id, so
the same changelogs, each partition's owned by one worker at a time), is killed with
SIGKILL mid-load, restarted (its tables recover from the changelogs), then stopped
gracefully (a rebalance back to one worker). Afterwards every request has exactly one
outcome, the ledger verifies, and the stream's balances (read from the wallets
changelog) equal the ledger's.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from ledger_writer.verify import verify
from tests.helpers import accepted, sql, wait_final
from walletpipe.supervisor import Supervisor, services

WALLETS = 12
REQUESTS_PER_PHASE = 50
CHANGELOG = "wallet-streams-wallets-changelog"


def stream_balances(bootstrap: str) -> dict[str, dict[str, Any]]:
    """The stream's latest wallet state per wallet, from its compacted changelog."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(CHANGELOG, timeout=10).topics[CHANGELOG]
        partitions = []
        ends = {}
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(CHANGELOG, p), timeout=10)
            if high > low:
                partitions.append(TopicPartition(CHANGELOG, p, low))
                ends[p] = high
        consumer.assign(partitions)
        latest: dict[str, dict[str, Any]] = {}
        done: set[int] = set()
        deadline = time.monotonic() + 30
        while len(done) < len(ends) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1):
                if message.error() is not None:
                    continue
                key = message.key().decode(errors="replace").strip('"')
                value = message.value()
                if value is not None:  # a wallet's value holds its balance under "state"
                    latest[key] = json.loads(value).get("state") or {}
                if message.offset() + 1 >= ends[message.partition()]:
                    done.add(message.partition())
        return latest
    finally:
        consumer.close()


def test_kill_restart_and_rebalance_under_load_keep_every_invariant(
    api: httpx.Client, running: dict[str, str], stack_dir: Path
) -> None:
    check_under_load(api, running, stack_dir, chaos=True)


def test_control_without_chaos(api: httpx.Client, running: dict[str, str], stack_dir: Path) -> None:
    check_under_load(api, running, stack_dir, chaos=False)


def check_under_load(
    api: httpx.Client, running: dict[str, str], stack_dir: Path, chaos: bool
) -> None:
    rng = random.Random(11)
    wallets = [new for new in (_wallet(api) for _ in range(WALLETS))]
    for wallet in wallets:
        body = {
            "transaction_type": "DEPOSIT",
            "destination_wallet_id": wallet,
            "amount": "500.00",
            "currency_code": "USD",
        }
        assert wait_final(api, accepted(api, body))["status"] == "COMPLETED"

    ids: list[str] = []

    def load(n: int) -> None:
        for _ in range(n):
            source, other = rng.sample(wallets, 2)
            kind = rng.choice(["TRANSFER", "TRANSFER", "PAYMENT", "WITHDRAWAL"])
            body: dict[str, Any] = {
                "transaction_type": kind,
                "source_wallet_id": source,
                "amount": f"{rng.randrange(500, 1500) / 100:.2f}",
                "currency_code": "USD",
            }
            if kind == "TRANSFER":
                body["destination_wallet_id"] = other
            ids.append(accepted(api, body))

    extra = Supervisor(
        running, stack_dir / "logs" / f"worker2-{uuid.uuid4().hex[:8]}" / "run", _repo_root()
    )
    streams_only = services(running, only={"streams"})
    if chaos:
        chaos_under_load(extra, streams_only, load)
    else:
        load(5 * REQUESTS_PER_PHASE)
    load(REQUESTS_PER_PHASE)

    results = {t: wait_final(api, t, timeout_s=180) for t in ids}
    assert {r["status"] for r in results.values()} <= {"COMPLETED", "FAILED"}
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
    deadline = time.monotonic() + 30
    while True:
        stream = stream_balances(running["KAFKA_BOOTSTRAP"])
        mismatched = {
            w: (
                stream.get(w, {}).get("available"),
                stream.get(w, {}).get("reserved"),
                str(ledger[w][0]),
            )
            for w in wallets
            if stream.get(w) is None
            or Decimal(stream[w]["available"]) != ledger[w][0]
            or Decimal(stream[w]["reserved"]) != 0
        }
        if not mismatched or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert mismatched == {}
    assert all(reserved == 0 for _available, reserved in ledger.values())


def chaos_under_load(extra: Supervisor, streams_only: list, load: Any) -> None:
    try:
        extra.start(streams_only)
        load(REQUESTS_PER_PHASE)  # the group rebalances to two workers meanwhile
        time.sleep(3)
        load(REQUESTS_PER_PHASE)
        os.killpg(extra.children["streams"].pid, signal.SIGKILL)  # mid-stream, no goodbye
        extra.children["streams"].wait(timeout=10)
        load(REQUESTS_PER_PHASE)  # the session dies; its partitions move back
        extra.start(streams_only)  # restarted: its tables recover from the changelogs
        load(REQUESTS_PER_PHASE)
        time.sleep(3)
        load(REQUESTS_PER_PHASE)
    finally:
        extra.stop()  # graceful: one more rebalance


def _wallet(api: httpx.Client) -> str:
    from tests.helpers import new_wallet

    return new_wallet(api)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]

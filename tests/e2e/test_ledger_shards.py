"""The system with N = 2 ledger shards, end to end: a stack of its own brought up with
WALLETPIPE_LEDGER_SHARDS=2 (directory database plus wallet_shard_0 and wallet_shard_1), the
API, the stream, one ledger writer per shard and the payment gateway as processes.

Through the public HTTP API only: deposits, a same-shard transfer, transfers and a
two-phase payment (partly captured) across shards both ways, reversals of both, spending
money that arrived from the other shard; then ``walletpipe ledger verify`` checks each
shard and both together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from domain.shards import ShardMap
from infra.processes import pick_port, port_is_free
from infra.settings import StackSettings
from tests.e2e.conftest import E2E_FEES, E2E_GATEWAY
from tests.helpers import accepted, balance, new_user, new_wallet, wait_final
from walletpipe.supervisor import Supervisor, services

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SHARDS = ShardMap(2)


@pytest.fixture(scope="module")
def sharded(start_stack, stack_dir: Path) -> Iterator[dict[str, str]]:
    local_dir = Path(f"{stack_dir}-shards")
    settings = StackSettings(
        ledger_shards=2,
        kafka_libs_dir=stack_dir / "kafka" / "libs",
        pg_shared_buffers_mb=64,
        kafka_heap_max_mb=512,
    )
    stack = start_stack(local_dir, settings)
    ingest_port = int(stack["INGEST_URL"].rsplit(":", 1)[1])
    if not port_is_free(ingest_port):  # another checkout's service took it meanwhile
        free = pick_port(ingest_port + 10, taken=set(), span=200)
        stack = {**stack, "INGEST_URL": f"http://127.0.0.1:{free}"}
    env = {**stack, "FEE_SCHEDULE": E2E_FEES, "STREAMS_LOG_LEVEL": "warn", **E2E_GATEWAY}
    supervisor = Supervisor(env, local_dir / "logs" / f"e2e-{uuid.uuid4().hex[:8]}", REPO)
    wanted = services(env, {"ingest", "streams", "ledger", "gateway"})
    assert [s.name for s in wanted if s.name.startswith("ledger")] == ["ledger-0", "ledger-1"]
    supervisor.start(wanted)
    try:
        supervisor.wait_ready(wanted)
        yield {**env, "WALLETPIPE_LOCAL_DIR": str(local_dir)}
        supervisor.check_alive()
    finally:
        supervisor.stop()


@pytest.fixture(scope="module")
def api(sharded: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sharded["INGEST_URL"], timeout=30, headers={"X-API-Key": sharded["DEMO_API_KEY"]}
    ) as client:
        yield client


def wallet_on(api: httpx.Client, shard: int) -> str:
    """A wallet of a new user whose bucket lies on ``shard`` (half of all users do)."""
    for _ in range(64):
        user = new_user(api)
        if SHARDS.shard_of_user(uuid.UUID(user)) == shard:
            return new_wallet(api, user_id=user)
    raise AssertionError(f"no user landed on shard {shard} in 64 tries")


def move(
    api: httpx.Client,
    kind: str,
    source: str | None,
    destination: str | None,
    amount: str,
    metadata: dict | None = None,
) -> str:
    body: dict = {"transaction_type": kind, "amount": amount, "currency_code": "USD"}
    if metadata:
        body["metadata"] = metadata
    if source:
        body["source_wallet_id"] = source
    if destination:
        body["destination_wallet_id"] = destination
    return accepted(api, body)


def reverse(api: httpx.Client, transaction_id: str, amount: str) -> httpx.Response:
    return api.post(
        f"/v1/transactions/{transaction_id}/reversals",
        json={"amount": amount},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )


def test_transfers_within_and_across_shards(api: httpx.Client, sharded: dict) -> None:
    assert len(sharded["LEDGER_DATABASE_URLS"].split(",")) == 2
    ann, bob = wallet_on(api, 0), wallet_on(api, 0)
    cat = wallet_on(api, 1)
    assert balance(api, cat) == 0  # no shard has posted to it yet: the directory's zero
    for wallet in (ann, cat):
        deposit = move(api, "DEPOSIT", None, wallet, "100.00")
        assert wait_final(api, deposit)["status"] == "COMPLETED"

    same = move(api, "TRANSFER", ann, bob, "10.00")
    cross = move(api, "TRANSFER", ann, cat, "25.00")
    back = move(api, "TRANSFER", cat, bob, "7.50")
    for transaction_id in (same, cross, back):
        final = wait_final(api, transaction_id)
        assert final["status"] == "COMPLETED", final
    events = [e["event_type"] for e in wait_final(api, cross)["events"]]
    assert events.count("SETTLED") == 2  # one per shard: debited on 0, credited on 1
    assert balance(api, ann) == Decimal("65.00")
    assert balance(api, bob) == Decimal("17.50")
    assert balance(api, cat) == Decimal("117.50")

    # A two-phase payment to another shard's wallet: held, 15 of 20 captured by the
    # gateway, credited on the payee's shard (the 1% fee stays with the payer's shard).
    payment = move(api, "PAYMENT", ann, cat, "20.00", {"gateway_outcome": "capture:15.00"})
    final = wait_final(api, payment)
    assert final["status"] == "COMPLETED", final
    assert balance(api, ann) == Decimal("49.80")
    assert balance(api, cat) == Decimal("132.50")

    # Reversals post on the payee's shard and cross back; never beyond what moved.
    too_much = reverse(api, payment, "20.00")
    assert too_much.status_code == 422, too_much.text
    assert too_much.json()["error"]["code"] == "REVERSAL_EXCEEDS_ORIGINAL"
    for original, amount in ((payment, "15.00"), (cross, "25.00")):
        answer = reverse(api, original, amount)
        assert answer.status_code == 202, answer.text
        assert wait_final(api, answer.json()["transaction_id"])["status"] == "COMPLETED"
        assert wait_final(api, original)["status"] == "REVERSED"
    assert balance(api, ann) == Decimal("89.80")
    assert balance(api, cat) == Decimal("92.50")

    # Money that arrived from shard 0 is spendable on shard 1, all of it.
    spend = move(api, "TRANSFER", cat, ann, "92.50")
    assert wait_final(api, spend)["status"] == "COMPLETED"
    overdraft = move(api, "TRANSFER", cat, bob, "0.01")
    assert wait_final(api, overdraft)["status"] == "FAILED"
    assert balance(api, ann) == Decimal("182.30")
    assert balance(api, cat) == 0

    cli = subprocess.run(
        [sys.executable, "-m", "walletpipe.cli", "ledger", "verify"],
        env={**os.environ, **sharded},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "shard 0:" in cli.stdout and "shard 1:" in cli.stdout
    assert "nothing in flight between shards" in cli.stdout
    assert "ledger verified: the books balance" in cli.stdout

"""Small helpers shared by integration and end-to-end tests (API calls, waiting, SQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
from confluent_kafka import Producer

TERMINAL = {"COMPLETED", "FAILED", "REVERSED"}
REPO = Path(__file__).resolve().parents[1]


def ordered_producer(bootstrap: str, **settings: object) -> Producer:
    """A producer that keeps each partition's records in the order they were produced.

    librdkafka's default producer is not idempotent: when a request is retried (as the
    first one to a topic just created often is, while its leader is elected) the requests
    sent after it can land first. A test that funds a wallet and then spends from it, both
    keyed by that wallet, would then see the spends before the deposit. The product's own
    producers are idempotent for the same reason."""
    return Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, **settings}
    )


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a key (the Java client's default partitioner, and librdkafka's
    ``murmur2_random``): ``(murmur2(key) & 0x7FFFFFFF) % partitions`` is a key's partition."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def new_user(api: httpx.Client) -> str:
    tag = uuid.uuid4()
    answer = api.post(
        "/v1/users",
        json={
            "email": f"t-{tag.hex[:16]}@example.com",
            "phone_number": f"+1{tag.int % 10**12:012d}",
            "password": "long enough secret",
            "first_name": "Test",
            "last_name": "User",
            "date_of_birth": "1990-05-01",
        },
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["user_id"])


def new_wallet(api: httpx.Client, currency: str = "USD", user_id: str | None = None) -> str:
    answer = api.post(
        "/v1/wallets", json={"user_id": user_id or new_user(api), "currency_code": currency}
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["wallet_id"])


def submit(api: httpx.Client, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return api.post(
        "/v1/transactions", json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())}
    )


def accepted(api: httpx.Client, body: dict[str, Any]) -> str:
    answer = submit(api, body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "PENDING"
    return str(answer.json()["transaction_id"])


def wait_final(api: httpx.Client, transaction_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = api.get(f"/v1/transactions/{transaction_id}")
        assert answer.status_code == 200, answer.text
        if answer.json()["status"] in TERMINAL:
            return dict(answer.json())
        time.sleep(0.1)
    raise AssertionError(f"transaction {transaction_id} still pending after {timeout_s}s")


def once_credited(api: httpx.Client, send: Any, timeout_s: float = 15) -> dict[str, Any]:
    """The outcome of the first spend of money just credited. The ledger says COMPLETED a
    moment before the stream has applied the credit (it reads the ledger's events, and a
    busy worker reads them late), so a spend refused for INSUFFICIENT_FUNDS in that moment
    (it moved nothing) is sent again, as a client would, for up to ``timeout_s``.
    ``send`` submits the spend and returns its transaction id."""
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = wait_final(api, send())
        if outcome.get("failure_code") != "INSUFFICIENT_FUNDS" or time.monotonic() > deadline:
            return outcome
        time.sleep(0.3)


def funded_wallet(api: httpx.Client, amount: str = "100.00") -> str:
    """A new USD wallet holding ``amount``, spendable in the stream as well as in the ledger.

    The deposit brings one cent more, and a one-cent transfer out of the wallet (sent again
    while the stream has not yet applied the deposit's credit, see ``once_credited``) shows
    the stream has it: a spend right after this returns is never refused for a credit the
    ledger has and the stream has not read yet."""
    wallet = new_wallet(api)
    deposit = accepted(
        api,
        {
            "transaction_type": "DEPOSIT",
            "destination_wallet_id": wallet,
            "amount": str(Decimal(amount) + Decimal("0.01")),
            "currency_code": "USD",
        },
    )
    assert wait_final(api, deposit)["status"] == "COMPLETED"
    cent_out = {
        "transaction_type": "TRANSFER",
        "source_wallet_id": wallet,
        "destination_wallet_id": new_wallet(api),
        "amount": "0.01",
        "currency_code": "USD",
    }
    moved = once_credited(api, lambda: accepted(api, cent_out))
    assert moved["status"] == "COMPLETED", moved
    return wallet


def balance(api: httpx.Client, wallet_id: str) -> Decimal:
    answer = api.get(f"/v1/wallets/{wallet_id}/balance")
    assert answer.status_code == 200, answer.text
    return Decimal(answer.json()["available"])


def sql(database_url: str, query: str, params: tuple | dict = ()) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description is not None else []


def make_client(
    database_url: str,
    role: str = "client",
    rate_limit_per_second: int = 1000,
    *,
    burst: int | None = None,
    expires_at: Any = None,
) -> str:
    """Another API client (tenant) with one key: returns the key. ``role`` is a role name,
    several comma-separated, or ``client`` (customer_app, pos and partner)."""
    from domain.access import hash_api_key, new_api_key, parse_roles

    key = new_api_key()
    roles = sorted(parse_roles(role.split(",")))
    name = f"test-{uuid.uuid4().hex[:12]}"
    sql(
        database_url,
        "SELECT api_key_issue(p_client_name => %s, p_key_hash => %s, p_key_prefix => %s,"
        " p_roles => %s, p_expires_at => %s, p_client_rate_limit => %s)",
        (name, hash_api_key(key), key[:10], roles, expires_at, rate_limit_per_second),
    )
    if burst is not None:
        sql(
            database_url,
            "UPDATE api_clients SET rate_limit_burst = %s WHERE name = %s",
            (burst, name),
        )
    return key


@contextmanager
def ingest_api_process(
    env: dict[str, str], log: Path, *, port_base: int, timeout_s: float = 30, startup_s: float = 60
) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """One ingest API process of its own (uvicorn, one worker) on a free port from
    ``port_base``, and a client with the demo key, once ``/health`` answers; killed at the
    end if the test has not already killed it."""
    from infra.processes import pick_port

    port = pick_port(port_base, taken=set(), span=1000)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "ingest_api.app:create_app"]
            + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=timeout_s,
            headers={"X-API-Key": env["DEMO_API_KEY"]},
        ) as client:
            deadline = time.monotonic() + startup_s
            while True:
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the API did not start"
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield process, client
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)

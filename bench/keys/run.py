"""bench/keys: what authenticating and rate-limiting a request costs, beside the baseline
(the in-process cache and bucket the API had before) measured in the same run.

    .venv/bin/python -m bench.keys.run [--calls 200000] [--http 5000]

1. In process, per call (CPU µs, and calls per CPU-second):
   - ``limiter``: main's per-process bucket (baseline) against the bucket table in a
     mapped file with a file lock (shared by every API process on the host), for a client
     bucket alone and for a client plus a key bucket;
   - ``authenticate``: a cached key end to end: main's sha256 + TTL cache + bucket
     (baseline) against ``Authenticator.authenticate`` (sha256, revision-checked cache,
     expiry, shared buckets), both awaited in one event loop.
2. ``--http N`` (needs `walletpipe up`): one real ingest process (uvicorn); N requests of
   ``GET /health`` (no key) and N of ``GET /v1/me`` (key checked and limited) over one
   keep-alive connection; the server's CPU per request from /proc. The difference is
   FastAPI resolving the caller dependency and the response model as well as the key
   check (the key check alone is the in-process ``authenticate_new_us``).
   ``http_me_db_transactions`` counts the database's transactions while the /v1/me
   requests ran (``http_me_seconds``; pg_stat_database, every client of the database):
   the revision reads and the API's background loops, a few a second, not one per
   request.

Not a test: it prints figures and the load average, and asserts nothing. The last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from domain.access import KeyGrant, Role, hash_api_key
from ingest_api.authentication import Authenticator
from ingest_api.caching import TtlCache
from ingest_api.ratelimit import RateLimiter, SharedBuckets

REPO = Path(__file__).resolve().parents[2]


class MainLimiter:
    """The API's limiter before this change (per process, in a dict): the baseline."""

    def __init__(self, clients_max: int) -> None:
        self._buckets: OrderedDict[uuid.UUID, tuple[float, float]] = OrderedDict()
        self._clients_max = clients_max

    def take(self, client_id: uuid.UUID, rate_per_second: int) -> None:
        now = time.monotonic()
        capacity = float(rate_per_second * 2)
        tokens, last = self._buckets.get(client_id, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate_per_second)
        allowed = tokens >= 1.0
        self._buckets[client_id] = (tokens - 1.0 if allowed else tokens, now)
        self._buckets.move_to_end(client_id)
        while len(self._buckets) > self._clients_max:
            self._buckets.popitem(last=False)
        if not allowed:
            raise RuntimeError("limited")


def cpu_per_call(calls: int, work: Any) -> float:
    """CPU µs per call of ``work`` (called ``calls`` times)."""
    started = time.process_time()
    work(calls)
    return (time.process_time() - started) / calls * 1e6


def grant(key_rate: int | None = None) -> KeyGrant:
    rate = 10**9  # never limited: the bench measures the cost, not refusals
    return KeyGrant(
        uuid.uuid4(), uuid.uuid4(), "bench", frozenset({Role.POS}), None, rate, rate, key_rate
    )


class NoPool:
    """A pool the cached path never uses; its one revision read answers 1."""

    class _Conn:
        async def execute(self, *_args: Any) -> Any:
            return self

        async def fetchone(self) -> tuple[int]:
            return (1,)

    def connection(self) -> Any:
        conn = self._Conn()

        class _Context:
            async def __aenter__(self) -> Any:
                return conn

            async def __aexit__(self, *_exc: Any) -> None:
                return None

        return _Context()


def in_process(calls: int, folder: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    main = MainLimiter(10_000)
    client = uuid.uuid4()

    def main_take(n: int) -> None:
        for _ in range(n):
            main.take(client, 10**9)

    shared = RateLimiter(
        SharedBuckets(folder / "buckets", 16_384),
        auth_failures_per_second=1,
        auth_failures_burst=20,
    )
    alone, with_key = grant(), grant(key_rate=10**9)

    def shared_take(n: int) -> None:
        for _ in range(n):
            shared.take_request(alone)

    def shared_take_two(n: int) -> None:
        for _ in range(n):
            shared.take_request(with_key)

    figures["limiter_main_us"] = cpu_per_call(calls, main_take)
    figures["limiter_shared_us"] = cpu_per_call(calls, shared_take)
    figures["limiter_shared_client_and_key_us"] = cpu_per_call(calls, shared_take_two)

    key = "wp_" + "k" * 43
    cache: TtlCache[str, KeyGrant] = TtlCache(100_000, 5_000)
    cache.put(hashlib.sha256(key.encode()).hexdigest(), alone)

    async def main_authenticate(n: int) -> None:
        for _ in range(n):
            found = cache.get(hashlib.sha256(key.encode()).hexdigest())
            assert found is not None
            main.take(found.client_id, 10**9)

    pool: Any = NoPool()
    auth = Authenticator(pool, shared, cache_entries_max=100_000, trust_ms=1_000, poll_ms=200)

    async def new_authenticate(n: int) -> None:
        await auth.check_revision()
        auth._cache.put(hash_api_key(key), alone, 1)  # noqa: SLF001 - a key looked up before
        for done in range(n):
            if done % 1_000 == 0:  # what the poller does in the service, 5 times a second
                await auth.check_revision()
            await auth.authenticate(key, "10.0.0.1")

    figures["authenticate_main_us"] = cpu_per_call(
        calls, lambda n: asyncio.run(main_authenticate(n))
    )
    figures["authenticate_new_us"] = cpu_per_call(calls, lambda n: asyncio.run(new_authenticate(n)))
    return figures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _bench_key(database_url: str) -> str:
    from psycopg import AsyncConnection

    from ingest_api import key_store

    async with await AsyncConnection.connect(database_url, autocommit=True) as conn:
        issued = await key_store.issue(
            conn,
            client_name=f"bench-keys-{uuid.uuid4().hex[:8]}",
            roles=frozenset({Role.POS}),
            client_rate_limit_per_second=10**6,
        )
    return issued.api_key


def _db_transactions(database_url: str) -> int:
    import psycopg

    time.sleep(1.5)  # backends report their counts at most once a second
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def over_http(requests: int, folder: Path) -> dict[str, float]:
    import httpx

    from infra import stack

    env = {
        **os.environ,
        **stack.read_env(Path(os.environ.get("WALLETPIPE_LOCAL_DIR", REPO / ".local"))),
    }
    port = _free_port()
    env.update(INGEST_URL=f"http://127.0.0.1:{port}", INGEST_RATE_LIMIT_FILE=str(folder / "http"))
    key = asyncio.run(_bench_key(env["DATABASE_URL"]))
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "ingest_api.app:create_app"]
        + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=REPO,
    )
    figures: dict[str, float] = {}
    try:
        with httpx.Client(base_url=env["INGEST_URL"], timeout=10) as client:
            for _ in range(300):
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            for name, path, headers in (
                ("http_health_us", "/health", {}),
                ("http_me_us", "/v1/me", {"X-API-Key": key}),
                ("http_health_again_us", "/health", {}),
                ("http_me_again_us", "/v1/me", {"X-API-Key": key}),
            ):
                for _ in range(200):  # warm: the key is looked up once, then cached
                    client.get(path, headers=headers)
                transactions = _db_transactions(env["DATABASE_URL"]) if name == "http_me_us" else 0
                before, started = _cpu_s(server.pid), time.monotonic()
                for _ in range(requests):
                    assert client.get(path, headers=headers).status_code == 200
                figures[name] = (_cpu_s(server.pid) - before) / requests * 1e6
                if name == "http_me_us":
                    figures["http_me_seconds"] = time.monotonic() - started
                    # Minus the two transactions of the counting itself.
                    after = _db_transactions(env["DATABASE_URL"])
                    figures["http_me_db_transactions"] = after - transactions - 2
    finally:
        server.terminate()
        server.wait(timeout=30)
    figures["http_me_minus_health_us"] = (
        figures["http_me_us"]
        + figures["http_me_again_us"]
        - figures["http_health_us"]
        - figures["http_health_again_us"]
    ) / 2
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--http", type=int, default=0, help="requests per route (needs `up`)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as tmp:
        figures = in_process(args.calls, Path(tmp))
        if args.http:
            figures.update(over_http(args.http, Path(tmp)))
    figures = {name: round(value, 2) for name, value in figures.items()}
    for name, value in figures.items():
        if name.endswith("_us"):
            per_cpu_s = f"{1e6 / value:>12,.0f} per CPU-second" if value > 0 else ""
            print(f"{name:<36} {value:>9.2f} µs  {per_cpu_s}")
        else:
            print(f"{name:<36} {value:>9.2f}")
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)
    figures["calls"] = args.calls
    figures["http_requests"] = args.http
    print(f"load average (1 min): {figures['load_average_1m']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

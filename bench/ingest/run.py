"""bench/ingest: CPU per accepted transaction of the ingest API process, beside the
baseline (another checkout's API, main by default) measured in the same run.

    .venv/bin/python -m bench.ingest.run [--requests 3000] [--baseline-ref main]

Needs `walletpipe up` (PostgreSQL and Kafka; no other service has to run). Each API runs
as one uvicorn process with one worker, on the same stack, with its own bench client (a
key with a rate limit high enough never to refuse). A generator in its own process
(aiohttp) sends TRANSFERs between wallets of that client, each with a new Idempotency-Key,
in phases that alternate between the two APIs:

- ``single_c1``: one request at a time (a POS terminal waiting for its answer);
- ``single_c16``: 16 requests in flight (many terminals at once);
- ``batch_100`` / ``batch_1000``: ``POST /v1/transactions/batch`` (the new API only).

Per phase: the API process's CPU per transaction from /proc (its whole tree), the
transactions per wall second, and PostgreSQL's transactions per API transaction
(``pg_stat_database``, every client of the database, background loops included). Every
answer is checked (202, or 200 with every item 202). Not a test: it prints figures and the
load average, and asserts nothing about speed. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bench.proctree import load_average, trees_cpu_s
from domain.access import Role
from infra import stack
from infra.processes import pick_port

REPO = Path(__file__).resolve().parents[2]
WALLETS = 50
CONCURRENCY = 16
STARTUP_S = 90.0


def _issue_key(database_url: str) -> str:
    from ingest_api import key_store

    async def issue() -> str:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            issued = await key_store.issue(
                conn,
                client_name=f"bench-ingest-{uuid.uuid4().hex[:8]}",
                roles=frozenset({Role.CUSTOMER_APP, Role.POS}),
                client_rate_limit_per_second=10**6,
            )
        return issued.api_key

    return asyncio.run(issue())


def _db_transactions(database_url: str) -> int:
    time.sleep(1.1)  # backends report their counts at most once a second
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def start_api(
    checkout: Path, env: dict[str, str], log: Path, taken: set[int]
) -> tuple[subprocess.Popen, str]:
    port = pick_port(48_000, taken=taken, span=1000)
    taken.add(port)
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "ingest_api.app:create_app"]
            + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            + ["--no-access-log", "--loop", "uvloop", "--http", "httptools"],
            env={**env, "PYTHONPATH": str(checkout), "INGEST_URL": url},
            cwd=checkout,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, url


def wait_ready(process: subprocess.Popen, url: str, log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API at {url} exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the API at {url} did not start")


def make_wallets(url: str, key: str) -> list[str]:
    import httpx

    wallets = []
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60) as api:
        for i in range(WALLETS):
            tag = uuid.uuid4()
            user = api.post(
                "/v1/users",
                json={
                    "email": f"b-{tag.hex[:16]}@example.com",
                    "phone_number": f"+1{tag.int % 10**12:012d}",
                    "password": "long enough secret",
                    "first_name": "Bench",
                    "last_name": f"User{i}",
                    "date_of_birth": "1990-05-01",
                },
            )
            user.raise_for_status()
            wallet = api.post(
                "/v1/wallets", json={"user_id": user.json()["user_id"], "currency_code": "USD"}
            )
            wallet.raise_for_status()
            wallets.append(wallet.json()["wallet_id"])
    return wallets


def transfer(wallets: list[str], n: int) -> dict[str, Any]:
    return {
        "transaction_type": "TRANSFER",
        "source_wallet_id": wallets[n % len(wallets)],
        "destination_wallet_id": wallets[(n + 1) % len(wallets)],
        "amount": f"{1 + n % 50}.25",
        "currency_code": "USD",
        "metadata": {"channel": "POS", "terminal_id": f"T{n % 20}"},
    }


async def _drive(url: str, key: str, wallets: list[str], phase: str, count: int) -> None:
    import aiohttp

    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as session:
        if phase.startswith("batch_"):
            size = int(phase.split("_")[1])

            async def one_batch(start: int) -> None:
                items = [
                    {"idempotency_key": str(uuid.uuid4()), "transaction": transfer(wallets, n)}
                    for n in range(start, start + size)
                ]
                async with session.post(
                    "/v1/transactions/batch", data=json.dumps({"transactions": items})
                ) as answer:
                    body = await answer.json()
                    if answer.status != 200 or body["accepted"] != size:
                        raise SystemExit(f"batch refused: {answer.status} {str(body)[:300]}")

            for start in range(0, count, size):
                await one_batch(start)
            return
        in_flight = 1 if phase == "single_c1" else CONCURRENCY
        next_n = iter(range(count))

        async def worker() -> None:
            for n in next_n:
                async with session.post(
                    "/v1/transactions",
                    data=json.dumps(transfer(wallets, n)),
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                ) as answer:
                    if answer.status != 202:
                        raise SystemExit(f"refused: {answer.status} {await answer.text()}")
                    await answer.read()

        await asyncio.gather(*(worker() for _ in range(in_flight)))


def drive(url: str, key: str, wallets: list[str], phase: str, count: int) -> None:
    """In its own process: the generator's CPU is not the API's."""
    asyncio.run(_drive(url, key, wallets, phase, count))


def run_phase(api: dict[str, Any], phase: str, count: int, database_url: str) -> dict[str, float]:
    warm = multiprocessing.Process(
        target=drive, args=(api["url"], api["key"], api["wallets"], phase, min(count, 200))
    )
    warm.start()
    warm.join()
    xacts = _db_transactions(database_url)
    before = trees_cpu_s({"api": [api["process"].pid]})["api"]
    started = time.monotonic()
    generator = multiprocessing.Process(
        target=drive, args=(api["url"], api["key"], api["wallets"], phase, count)
    )
    generator.start()
    generator.join()
    seconds = time.monotonic() - started
    cpu_s = trees_cpu_s({"api": [api["process"].pid]})["api"] - before
    if generator.exitcode != 0:
        raise SystemExit(f"the generator failed in {phase} against {api['name']}")
    db = _db_transactions(database_url) - xacts - 2  # the counting's own two
    return {
        "cpu_ms_per_tx": round(cpu_s / count * 1000, 3),
        "tx_per_s": round(count / seconds, 1),
        "db_xacts_per_tx": round(db / count, 3),
    }


def baseline_checkout(ref: str, folder: Path) -> Path:
    checkout = folder / "baseline"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(checkout), ref],
        check=True,
        capture_output=True,
    )
    return checkout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per phase and API")
    parser.add_argument("--baseline-ref", default="main", help="git ref of the baseline API")
    args = parser.parse_args(argv)
    env = {
        **os.environ,
        **stack.read_env(Path(os.environ.get("WALLETPIPE_LOCAL_DIR", REPO / ".local"))),
    }
    database_url = env["DATABASE_URL"]
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        folder = Path(tmp)
        checkouts = {"baseline": baseline_checkout(args.baseline_ref, folder), "new": REPO}
        apis: dict[str, dict[str, Any]] = {}
        ports: set[int] = set()
        try:
            for name, checkout in checkouts.items():
                log = folder / f"{name}.log"
                api_env = {**env, "INGEST_RATE_LIMIT_FILE": str(folder / f"{name}.buckets")}
                process, url = start_api(checkout, api_env, log, ports)
                apis[name] = {"name": name, "process": process, "url": url, "log": log}
            for api in apis.values():
                wait_ready(api["process"], api["url"], api["log"])
                api["key"] = _issue_key(database_url)
                api["wallets"] = make_wallets(api["url"], api["key"])
            figures: dict[str, dict[str, float]] = {}
            plan = [
                (phase, name)
                for phase in ("single_c1", "single_c16")
                for name in ("baseline", "new")
            ] + [("batch_100", "new"), ("batch_1000", "new")]
            for phase, name in plan:
                result = run_phase(apis[name], phase, args.requests, database_url)
                figures[f"{name}_{phase}"] = result
                print(
                    f"{name:<9} {phase:<11} {result['cpu_ms_per_tx']:>7.3f} ms CPU/tx"
                    f"  {result['tx_per_s']:>8.1f} tx/s"
                    f"  {result['db_xacts_per_tx']:>6.3f} PostgreSQL xacts/tx"
                    f"  (load {load_average()})",
                    flush=True,
                )
        finally:
            for api in apis.values():
                api["process"].terminate()
                api["process"].wait(timeout=30)
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder / "baseline")],
                check=False,
                capture_output=True,
            )
    summary = {
        "requests_per_phase": args.requests,
        "baseline_ref": args.baseline_ref,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "phases": figures,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""bench/e2e: the whole pipeline on this machine at fixed rates, and what each part costs.

    .venv/bin/python -m bench.e2e.run [--rates 100,300,1000,2000] [--seconds 30]

It brings up a private stack (``.local/bench-e2e`` by default, its own ports), starts every
service as ``walletpipe run`` does, creates the simulator's population through the API and
funds it, then for each rate starts the load generator in its own process
(``bench.e2e.generator``: open loop, the simulator's mix of deposits, payments, transfers
and withdrawals, no fraud): ``--warmup-s`` of load that is not measured, then ``--seconds``
that are. Per rate it prints completed/s, the share of accepted requests that ended,
sent → final latency p50/p95/p99 by transaction type, and the CPU milliseconds per accepted
transaction of each component, read from /proc from the first measured request until every
outcome is in (so a backlog's work is counted): ingest, Kafka, streams, ledger (every
shard's writer), PostgreSQL (the postmaster and its backends), analytics, gateway, and the
generator. ``total`` is the pipeline's, the generator not
counted. Beside each component's total it shows where the time goes inside it: CPU per
transaction by thread (the broker's request and network threads, its garbage collector and
JIT; a service's librdkafka threads, ``rdk:*``, beside its Python ones), and the analytics
sink's CPU per row it stored. The last line is one JSON object:

    {"load_average_start": ..., "rates": [{"target_per_s", "completed_per_s", "ended_share",
      "p50_ms": {type: ms}, "p95_ms": ..., "p99_ms": ..., "cpu_ms_per_tx": {"total",
      "kafka", "ingest", "streams", "ledger", "postgres", "analytics", "gateway",
      "generator"}, "threads_ms_per_tx": {component: {thread: ms}}, "analytics_rows",
      "analytics_us_per_row", "load_average"}, ...]}

Payments and withdrawals include the simulated gateway's latency (``GATEWAY_LATENCY_MS``).
The stack is stopped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp

from bench.proctree import load_average, threads_cpu_s, tree_pids, trees_cpu_s
from infra import kafka, postgres, stack
from infra.migrate import ensure_demo_client
from infra.settings import StackSettings
from models.scenarios import ScenarioConfig, Simulator
from walletpipe.simulate import Outcomes, Traffic, watch_outcomes
from walletpipe.supervisor import Supervisor, services

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("ingest", "kafka", "streams", "ledger", "postgres", "analytics", "gateway")
BENCH_CLIENT = "bench-e2e"
#: The bench's own API client may send this many requests per second (the demo's has 1,000).
BENCH_RATE_LIMIT_PER_S = 100_000
FUNDING_WAIT_S = 120.0
#: Requests in flight while the population is made: users' passwords are hashed (scrypt),
#: and on a busy machine more at once only time out.
POPULATION_CONNECTIONS = 8
#: The population's passwords are hashed with scrypt at the API's minimum cost: making them
#: is not what the bench measures.
BENCH_SCRYPT_N = 1024
#: Thread groups shown per component (the busiest).
THREADS_SHOWN = 6
Sample = tuple[float, dict[str, float], dict[str, dict[str, float]], int | None]


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))], 1)


def component_roots(local_dir: Path, supervisor: Supervisor) -> dict[str, list[int]]:
    """Each component's root pids: a service's process (its workers are its descendants),
    the broker's JVM, the postmaster (its backends are its children)."""
    settings = StackSettings()
    roots: dict[str, list[int]] = {name: [] for name in COMPONENTS}
    for name, child in supervisor.children.items():
        component = "ledger" if name.startswith("ledger") else name
        roots.setdefault(component, []).append(child.pid)
    roots["kafka"] = [pid] if (pid := kafka.running_pid(local_dir, settings)) else []
    roots["postgres"] = [pid] if (pid := postgres.running_pid(local_dir)) else []
    return roots


async def make_population(env: dict[str, str], api_key: str, config: ScenarioConfig) -> dict:
    """Users and wallets through the API, each wallet's opening deposit posted."""
    simulator = Simulator(config)
    outcomes = Outcomes()
    stop, ready = threading.Event(), threading.Event()
    watcher = threading.Thread(
        target=watch_outcomes, args=(env["KAFKA_BOOTSTRAP"], outcomes, stop, ready), daemon=True
    )
    watcher.start()
    ready.wait(timeout=60)
    try:
        async with aiohttp.ClientSession(
            base_url=env["INGEST_URL"],
            headers={"X-API-Key": api_key},
            timeout=aiohttp.ClientTimeout(total=60),
            connector=aiohttp.TCPConnector(limit=POPULATION_CONNECTIONS),
        ) as client:
            traffic = Traffic(client, outcomes, simulator)
            await traffic.create_population()
            openings = simulator.openings()
            await asyncio.gather(*[traffic.submit(traffic.body(o), o) for o in openings])
        deadline = time.monotonic() + FUNDING_WAIT_S
        while outcomes.open_count() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        if outcomes.open_count():
            raise SystemExit(f"{outcomes.open_count()} opening deposits did not end in time")
    finally:
        stop.set()
        watcher.join(timeout=5)
    return {
        "users": config.customers,
        "merchants": config.merchants,
        "seed": config.seed,
        "wallets": traffic.wallets,
    }


def run_rate(
    args: argparse.Namespace,
    env: dict[str, str],
    api_key: str,
    population: Path,
    roots: dict[str, list[int]],
    rate: float,
    work: Path,
) -> dict:
    out = work / f"rate-{rate:g}.json"
    generator = subprocess.Popen(
        [
            sys.executable, "-m", "bench.e2e.generator",
            "--population", str(population),
            "--ingest-url", env["INGEST_URL"],
            "--api-key", api_key,
            "--bootstrap", env["KAFKA_BOOTSTRAP"],
            "--rate", str(rate),
            "--seconds", str(args.seconds),
            "--settle-s", str(args.settle_s),
            "--warmup-s", str(args.warmup_s),
            "--prefer-wait-s", str(args.prefer_wait_s),
            "--out", str(out),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert generator.stdout is not None
    samples: dict[str, Sample] = {}
    for line in generator.stdout:
        marker = line.strip()
        if marker in ("SEND_START", "SEND_END", "SETTLED"):
            cpu = trees_cpu_s({**roots, "generator": [generator.pid]})
            threads = {name: threads_cpu_s(tree_pids(pids)) for name, pids in roots.items()}
            samples[marker] = (time.monotonic(), cpu, threads, analytics_rows(env))
    if generator.wait() != 0 or not out.exists() or len(samples) != 3:
        raise SystemExit(f"the generator failed at {rate:g}/s (exit {generator.returncode})")
    result = json.loads(out.read_text())
    return summarize(result, samples["SEND_START"], samples["SETTLED"])


def analytics_rows(env: dict[str, str]) -> int | None:
    """Rows the analytics sink has stored so far (its health answer), None if unknown."""
    try:
        with urllib.request.urlopen(f"{env['ANALYTICS_URL']}/health", timeout=5) as answer:
            return int(json.loads(answer.read())["rows_written"])
    except (OSError, ValueError, KeyError):
        return None


def threads_per_tx(start: Sample, end: Sample, accepted: int) -> dict[str, dict[str, float]]:
    """Each component's busiest thread groups, in CPU ms per accepted transaction."""
    shown: dict[str, dict[str, float]] = {}
    for component, after in end[2].items():
        before = start[2].get(component, {})
        spent = {name: after[name] - before.get(name, 0.0) for name in after}
        busiest = sorted(spent.items(), key=lambda item: -item[1])[:THREADS_SHOWN]
        shown[component] = {
            name: round(1000 * seconds / max(accepted, 1), 3)
            for name, seconds in busiest
            if seconds > 0
        }
    return shown


def summarize(result: dict, start: Sample, end: Sample) -> dict:
    requests = result["requests"]
    accepted = len(requests)
    ended = [r for r in requests if r["status"] is not None]
    send_s = result["send_s"]
    # Completed per second: the outcomes that arrived while the generator was sending.
    in_window = [r for r in ended if r["ended_at"] <= send_s]
    by_type: dict[str, list[float]] = {}
    for r in ended:
        by_type.setdefault(r["type"], []).append(r["latency_ms"])
    for values in by_type.values():
        values.sort()
    cpu = {name: end[1].get(name, 0.0) - start[1].get(name, 0.0) for name in end[1]}
    per_tx = {name: round(1000 * cpu[name] / max(accepted, 1), 3) for name in cpu}
    per_tx["total"] = round(sum(v for k, v in per_tx.items() if k in COMPONENTS), 3)
    rows = end[3] - start[3] if end[3] is not None and start[3] is not None else None
    return {
        "target_per_s": result["target_per_s"],
        "accepted": accepted,
        "accepted_per_s": round(accepted / send_s, 1),
        "completed_per_s": round(len(in_window) / send_s, 1),
        "ended_share": round(len(ended) / accepted, 5) if accepted else 0.0,
        "not_sent": result["not_sent"],
        "refused": result["refused"],
        "p50_ms": {t: percentile(v, 0.50) for t, v in sorted(by_type.items())},
        "p95_ms": {t: percentile(v, 0.95) for t, v in sorted(by_type.items())},
        "p99_ms": {t: percentile(v, 0.99) for t, v in sorted(by_type.items())},
        "cpu_ms_per_tx": per_tx,
        "threads_ms_per_tx": threads_per_tx(start, end, accepted),
        "analytics_rows": rows,
        "analytics_us_per_row": (
            round(1e6 * cpu.get("analytics", 0.0) / rows, 1) if rows else None
        ),
        "load_average": load_average(),
    }


def print_rate(row: dict) -> None:
    print(
        f"\n{row['target_per_s']:>6g}/s target: accepted {row['accepted']} "
        f"({row['accepted_per_s']}/s), completed {row['completed_per_s']}/s while sending, "
        f"ended {100 * row['ended_share']:.2f} %, not sent {row['not_sent']}, "
        f"refused {row['refused'] or 'none'}, load {row['load_average']}"
    )
    print(f"  {'type':<11}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for kind in row["p50_ms"]:
        print(
            f"  {kind:<11}{row['p50_ms'][kind]!s:>10}{row['p95_ms'][kind]!s:>10}"
            f"{row['p99_ms'][kind]!s:>10}"
        )
    cpu = row["cpu_ms_per_tx"]
    print(
        "  CPU ms per transaction: "
        + ", ".join(f"{k} {cpu[k]}" for k in (*COMPONENTS, "total", "generator"))
    )
    for component, threads in row["threads_ms_per_tx"].items():
        print(f"    {component:<10} " + ", ".join(f"{n} {ms}" for n, ms in threads.items()))
    print(
        f"  analytics: {row['analytics_rows']} rows stored, "
        f"{row['analytics_us_per_row']} µs of its CPU per row"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,300,1000,2000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle-s", type=float, default=30.0)
    parser.add_argument(
        "--warmup-s", type=float, default=10.0, help="load sent before measuring, per rate"
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--merchants", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--prefer-wait-s", type=int, default=0, help="send Prefer: wait=N (0: plain 202s)"
    )
    parser.add_argument("--local-dir", type=Path, default=REPO / ".local" / "bench-e2e")
    parser.add_argument("--keep", action="store_true", help="leave the stack up afterwards")
    parser.add_argument(
        "--ready-timeout-s", type=float, default=600.0, help="for every service to be ready"
    )
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    started_load = load_average()

    local_dir = args.local_dir.resolve()
    env = stack.up(local_dir)
    api_key = "wp_bench_" + secrets.token_urlsafe(24)
    ensure_demo_client(
        env["DATABASE_URL"],
        name=BENCH_CLIENT,
        api_key=api_key,
        rate_limit_per_second=BENCH_RATE_LIMIT_PER_S,
    )
    env = {**env, "PASSWORD_SCRYPT_N": str(BENCH_SCRYPT_N)}
    # A service that fails while the stack starts (a timeout on a loaded machine) is
    # restarted; each rate measures the processes alive when it starts.
    supervisor = Supervisor(env, local_dir / "logs", REPO, restart=True)
    wanted = services(env)
    rows = []
    try:
        supervisor.start(wanted)
        supervisor.wait_ready(wanted, timeout_s=args.ready_timeout_s)
        config = ScenarioConfig(args.users, args.merchants, args.seed, fraud=False)
        print(f"creating and funding {args.users} customers and {args.merchants} merchants ...")
        population = asyncio.run(make_population(env, api_key, config))
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as work_dir:
            work = Path(work_dir)
            population_file = work / "population.json"
            population_file.write_text(json.dumps(population))
            for rate in rates:
                print(f"\nsending {rate:g}/s for {args.seconds:g} s ...", flush=True)
                supervisor.tend()
                roots = component_roots(local_dir, supervisor)
                row = run_rate(args, env, api_key, population_file, roots, rate, work)
                print_rate(row)
                rows.append(row)
    finally:
        supervisor.stop()
        if not args.keep:
            stack.down(local_dir)
    print(json.dumps({"load_average_start": started_load, "rates": rows}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

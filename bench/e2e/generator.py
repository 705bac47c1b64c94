"""bench/e2e's load generator: its own process, so its CPU is counted apart from the stack.

Open loop: request i is sent at ``start + i / rate`` whatever the answers do, as POS
terminals and apps would. A request is timed from the moment it is sent to the moment its
final outcome (``TransactionPosted``, ``TransactionFailed`` or ``TransactionRejected``) is
read from the pipeline's topics by a read-committed consumer in this process; an answer
that carries the final state (``Prefer: wait``) ends it at once. In-flight requests are
bounded: past the bound a due request is counted as ``not_sent`` (the stack is not keeping
up) instead of queueing without limit.

    python -m bench.e2e.generator --population FILE --rate 300 --seconds 30 --out FILE

It first sends at the rate for ``--warmup-s`` (not measured: connections, caches, the JIT
and the consumers' batches reach their steady state), then prints ``SEND_START``, sends
for ``--seconds``, prints ``SEND_END``, and ``SETTLED`` once every measured outcome is in
(or the settle time is over), each on its own line, for the orchestrator to sample CPU
at. Every measured request's timings go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from pathlib import Path

import aiohttp

from models.scenarios import ScenarioConfig, Simulator
from walletpipe.simulate import Outcomes, Traffic, watch_outcomes

#: Requests awaiting their HTTP answer at once; past it a due request is not sent.
IN_FLIGHT_MAX = 4_096
#: After the last request, how long to wait for outcomes still on their way.
SETTLE_S_DEFAULT = 30.0


def _population(path: Path) -> tuple[Simulator, dict[str, str]]:
    saved = json.loads(path.read_text())
    config = ScenarioConfig(saved["users"], saved["merchants"], saved["seed"], fraud=False)
    return Simulator(config), saved["wallets"]


async def _send_all(args: argparse.Namespace, outcomes: Outcomes) -> dict:
    simulator, wallets = _population(args.population)
    sent: dict[str, tuple[str, float]] = {}  # transaction id -> (type, sent at)
    refused: dict[str, int] = {}
    not_sent = 0
    in_flight = 0
    headers = {"X-API-Key": args.api_key}
    if args.prefer_wait_s:
        headers["Prefer"] = f"wait={args.prefer_wait_s}"
    connector = aiohttp.TCPConnector(limit=args.connections)
    async with aiohttp.ClientSession(
        base_url=args.ingest_url,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=30),
        connector=connector,
    ) as client:
        traffic = Traffic(client, outcomes, simulator)
        traffic.wallets = wallets
        traffic.customers = [p.id for p in simulator.population.customers]
        traffic.merchants = [m.id for m in simulator.population.merchants]
        stream = simulator.traffic()

        async def one(body: dict, measured: bool) -> None:
            nonlocal in_flight
            kind = body["transaction_type"]
            started = time.monotonic()
            try:
                async with client.post(
                    "/v1/transactions", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
                ) as answer:
                    payload = await answer.json(content_type=None)
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError) as error:
                refused[type(error).__name__] = refused.get(type(error).__name__, 0) + 1
                return
            finally:
                in_flight -= 1
            if status >= 400:
                code = (payload or {}).get("error", {}).get("code", str(status))
                refused[code] = refused.get(code, 0) + 1
                return
            transaction_id = payload["transaction_id"]
            if not measured:
                return
            sent[transaction_id] = (kind, started)
            outcomes.accepted(transaction_id)
            final = payload.get("status")
            if status == 200 and final in ("COMPLETED", "FAILED", "REVERSED"):
                outcomes.finish(transaction_id, final, payload.get("failure_code") or "")

        total = int(args.rate * args.seconds)
        warmup = int(args.rate * args.warmup_s)
        tasks: set[asyncio.Task] = set()
        started = time.monotonic()
        for i in range(warmup + total):
            if i == warmup:
                print("SEND_START", flush=True)
                measured_from = time.monotonic()
            delay = started + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            body, _transaction = traffic.next_request(stream)
            if in_flight >= IN_FLIGHT_MAX:
                not_sent += i >= warmup
                continue
            in_flight += 1
            task = asyncio.create_task(one(body, measured=i >= warmup))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        send_s = time.monotonic() - measured_from
        print("SEND_END", flush=True)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
    deadline = time.monotonic() + args.settle_s
    while outcomes.open_count() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    print("SETTLED", flush=True)
    with outcomes.lock:
        finished = dict(outcomes.finished)
    return {
        "target_per_s": args.rate,
        "send_s": send_s,
        "due": total,
        "not_sent": not_sent,
        "refused": refused,
        "requests": [
            {
                "type": kind,
                "latency_ms": (finished[t][2] - at) * 1000 if t in finished else None,
                "status": finished[t][0] if t in finished else None,
                "ended_at": finished[t][2] - measured_from if t in finished else None,
            }
            for t, (kind, at) in sent.items()
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=Path, required=True)
    parser.add_argument("--ingest-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--settle-s", type=float, default=SETTLE_S_DEFAULT)
    parser.add_argument("--warmup-s", type=float, default=0.0)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--prefer-wait-s", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    outcomes = Outcomes()
    stop, ready = threading.Event(), threading.Event()
    watcher = threading.Thread(
        target=watch_outcomes, args=(args.bootstrap, outcomes, stop, ready), daemon=True
    )
    watcher.start()
    if not ready.wait(timeout=60):
        raise SystemExit("the outcome consumer did not start")
    try:
        result = asyncio.run(_send_all(args, outcomes))
    finally:
        stop.set()
        watcher.join(timeout=5)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()

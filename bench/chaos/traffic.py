"""Simulated traffic for the chaos bench: ``walletpipe simulate``'s generator and client, run
open-ended in a thread of its own until the driver is done.

The population is created and funded first; then requests go out at ``tps`` (an open loop:
the clock, not the answers, sets the pace) until ``stop``. Each request the API does not
answer, or answers 503 or 429, is sent again with the same Idempotency-Key for
``retry_for_s`` (``walletpipe.simulate.Traffic``), so a kill of the API or a Kafka or
PostgreSQL restart delays requests rather than losing them. Outcomes are read from the
pipeline's topics as ``simulate`` reads them; the recovery measurement uses their times.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import aiohttp

from models.scenarios import ScenarioConfig, Simulator
from walletpipe.simulate import Outcomes, Traffic, watch_outcomes

#: Requests waiting for an answer at most; past it a tick sends nothing (counted) rather
#: than queue without bound while the API is away.
PENDING_MAX = 5_000
FUNDING_WAIT_S = 120.0


@dataclass(frozen=True)
class TrafficConfig:
    tps: int = 10
    users: int = 60
    merchants: int = 6
    seed: int = 7
    retry_for_s: float = 240.0


class LiveTraffic:
    """``start`` → ``ready`` (population funded) → ... → ``stop``; thread-safe reads of the
    outcomes (``outcomes``) and counters while it runs."""

    def __init__(self, ingest_url: str, api_key: str, bootstrap: str, config: TrafficConfig):
        self.ingest_url = ingest_url
        self.api_key = api_key
        self.bootstrap = bootstrap
        self.config = config
        self.outcomes = Outcomes()
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self.not_sent = 0
        self.traffic: Traffic | None = None
        self._stop = threading.Event()
        self._watch_stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="chaos-traffic", daemon=True)
        self._watcher: threading.Thread | None = None

    def start(self, timeout_s: float) -> None:
        watching = threading.Event()
        self._watcher = threading.Thread(
            target=watch_outcomes,
            args=(self.bootstrap, self.outcomes, self._watch_stop, watching),
            daemon=True,
        )
        self._watcher.start()
        if not watching.wait(30):
            raise RuntimeError("the outcome watcher did not start (is Kafka up?)")
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.5):
            if self.failed is not None or not self._thread.is_alive():
                raise RuntimeError(f"traffic did not start: {self.failed!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"population not created and funded in {timeout_s:.0f}s")

    def stop(self, timeout_s: float) -> None:
        """Stop sending; wait for the requests still out (each bounded by retry_for_s)."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def close(self) -> None:
        self._stop.set()
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)

    @property
    def sent(self) -> int:
        return self.traffic.sent if self.traffic else 0

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as error:  # noqa: BLE001 - reported to the driver
            self.failed = error

    async def _run(self) -> None:
        c = self.config
        simulator = Simulator(ScenarioConfig(c.users, c.merchants, c.seed, True))
        async with aiohttp.ClientSession(
            base_url=self.ingest_url,
            headers={"X-API-Key": self.api_key},
            timeout=aiohttp.ClientTimeout(total=30),
            connector=aiohttp.TCPConnector(limit=64),
        ) as client:
            traffic = Traffic(client, self.outcomes, simulator)
            traffic.retry_for_s = c.retry_for_s
            self.traffic = traffic
            await traffic.create_population()
            await asyncio.gather(
                *[
                    traffic.submit(traffic.body(opening), opening)
                    for opening in simulator.openings()
                ]
            )
            funded_by = time.monotonic() + FUNDING_WAIT_S
            while self.outcomes.open_count() and time.monotonic() < funded_by:
                await asyncio.sleep(0.2)
            self.ready.set()
            await self._send(traffic, simulator)

    async def _send(self, traffic: Traffic, simulator: Simulator) -> None:
        pending: set[asyncio.Task] = set()
        stream = simulator.traffic()
        started = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            due = started + sent / self.config.tps
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(min(delay, 0.2))
                continue
            sent += 1
            if len(pending) >= PENDING_MAX:
                self.not_sent += 1
                continue
            task = asyncio.create_task(traffic.submit(*traffic.next_request(stream)))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)

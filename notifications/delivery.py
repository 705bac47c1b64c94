"""Send due deliveries to their endpoints: signed, bounded in time and concurrency, retried
with backoff, dead-lettered when the retry window has passed.

A slow or dead endpoint holds at most ``endpoint_concurrency_max`` attempts at once, each
at most ``delivery_timeout_ms``; its failures move its deliveries later (backoff), and
the scheduler claims for every endpoint in random order, so other endpoints go on as if it
were not there. The endpoint's address is checked at every attempt (DNS may have changed
since it subscribed) and the connection goes to the address that was checked, so a second
lookup cannot slip an internal address in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from domain.backoff import Backoff
from domain.webhooks import (
    ATTEMPT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    AddressPolicy,
    EndpointRefused,
    RetryPolicy,
    sign,
)
from notifications import store
from notifications.settings import NotificationSettings

log = logging.getLogger("notifications.delivery")
USER_AGENT = "walletpipe-webhooks/1"
#: A claimed attempt's lease beyond its timeout: a service that died mid-attempt leaves
#: the delivery to be claimed again after this.
LEASE_MARGIN_S = 30.0


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the endpoint's status (None: no answer) and a short text."""

    status_code: int | None
    text: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Sender:
    """One HTTP attempt, with the address rules applied to the address actually called."""

    def __init__(self, settings: NotificationSettings, policy: AddressPolicy) -> None:
        self.policy = policy
        self.timeout_s = settings.delivery_timeout_ms / 1000
        self.answer_bytes_max = settings.answer_bytes_max
        self.client = httpx.AsyncClient(
            timeout=self.timeout_s,
            follow_redirects=False,  # a redirect could point anywhere: it is a failure
            trust_env=False,  # no proxy from the environment between us and the check
            limits=httpx.Limits(
                max_connections=settings.concurrency_max,
                max_keepalive_connections=settings.concurrency_max,
            ),
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def send(self, claimed: store.Claimed) -> Outcome:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._send(claimed)
        except TimeoutError:
            return Outcome(None, f"no answer within {self.timeout_s:g} s")
        except EndpointRefused as error:
            return Outcome(None, error.message)
        except (httpx.HTTPError, OSError) as error:
            return Outcome(None, f"{type(error).__name__}: {error}"[:300])

    async def _send(self, claimed: store.Claimed) -> Outcome:
        endpoint = self.policy.endpoint(claimed.url)
        infos = await asyncio.get_running_loop().getaddrinfo(
            endpoint.host, endpoint.port, type=socket.SOCK_STREAM
        )
        address = self.policy.check(endpoint.host, [str(info[4][0]) for info in infos])[0]
        url = httpx.URL(claimed.url)
        pinned = url.copy_with(host=str(address))
        headers = {
            "Host": url.netloc.decode(),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_ID_HEADER: str(claimed.event_id),
            EVENT_TYPE_HEADER: claimed.event_type,
            ATTEMPT_HEADER: str(claimed.attempts),
            SIGNATURE_HEADER: sign(claimed.secret, int(time.time()), claimed.body),
        }
        extensions = {"sni_hostname": endpoint.host} if endpoint.scheme == "https" else {}
        async with self.client.stream(
            "POST", pinned, content=claimed.body, headers=headers, extensions=extensions
        ) as answer:
            text = await self._answer_text(answer)
        return Outcome(answer.status_code, text)

    async def _answer_text(self, answer: httpx.Response) -> str:
        kept = b""
        async for chunk in answer.aiter_bytes():
            kept += chunk[: self.answer_bytes_max - len(kept)]
            if len(kept) >= self.answer_bytes_max:
                break
        return kept.decode(errors="replace")


class Scheduler:
    """Claims due deliveries from PostgreSQL and runs their attempts, bounded."""

    def __init__(
        self,
        settings: NotificationSettings,
        pool: AsyncConnectionPool[Any],
        sender: Sender,
        retry: RetryPolicy,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.sender = sender
        self.retry = retry
        self.rng = rng or random.Random()
        self.in_flight: dict[uuid.UUID, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.lease_s = settings.delivery_timeout_ms / 1000 + LEASE_MARGIN_S

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        backoff = Backoff(initial_s=0.2, delay_max_s=10.0)
        poll_s = self.settings.poll_interval_ms / 1000
        try:
            while not stop.is_set():
                wake.clear()
                try:
                    await self._claim_and_start(wake)
                    backoff.reset()
                except (psycopg.Error, OSError) as error:
                    log.warning("could not claim deliveries (%s); retrying", error)
                    await _wait_any(stop, None, backoff.next_delay())
                    continue
                await _wait_any(stop, wake, poll_s)
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _claim_and_start(self, wake: asyncio.Event) -> None:
        room = self.settings.concurrency_max - len(self.tasks)
        if room <= 0:
            return
        endpoint_max = self.settings.endpoint_concurrency_max
        free = {sub: endpoint_max - n for sub, n in self.in_flight.items() if n > 0}
        async with self.pool.connection() as conn:
            claimed = await store.claim(
                conn,
                room=room,
                free_by_endpoint=free,
                endpoint_max=endpoint_max,
                lease_s=self.lease_s,
            )
        for delivery in claimed:
            sub = delivery.subscription_id
            self.in_flight[sub] = self.in_flight.get(sub, 0) + 1
            task = asyncio.create_task(self._attempt(delivery, wake))
            self.tasks.add(task)

    async def _attempt(self, delivery: store.Claimed, wake: asyncio.Event) -> None:
        try:
            outcome = await self.sender.send(delivery)
            with contextlib.suppress(psycopg.Error, OSError):  # the lease brings it back
                await self._record(delivery, outcome)
        finally:
            sub = delivery.subscription_id
            self.in_flight[sub] -= 1
            if self.in_flight[sub] <= 0:
                del self.in_flight[sub]
            self.tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            wake.set()

    async def _record(self, delivery: store.Claimed, outcome: Outcome) -> None:
        async with self.pool.connection() as conn:
            if outcome.ok:
                assert outcome.status_code is not None
                await store.delivered(conn, delivery.delivery_id, outcome.status_code, outcome.text)
                return
            now = datetime.now(UTC)
            retry_at = self.retry.next_attempt_at(
                delivery.attempts, delivery.first_attempt_at, now, self.rng
            )
            error = (
                outcome.text
                if outcome.status_code is None
                else f"HTTP {outcome.status_code}: {outcome.text}"
            )
            await store.failed(
                conn, delivery.delivery_id, outcome.status_code, error[:1000], retry_at
            )
            if retry_at is None:
                log.warning(
                    "delivery %s (event %s) dead-lettered after %s attempts: %s",
                    delivery.delivery_id,
                    delivery.event_id,
                    delivery.attempts,
                    error[:200],
                )


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event | None, timeout_s: float) -> None:
    waits = [asyncio.create_task(stop.wait())]
    if wake is not None:
        waits.append(asyncio.create_task(wake.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()

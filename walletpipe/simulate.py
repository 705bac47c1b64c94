"""``walletpipe simulate``: POS and app traffic with fraud against the real API, its outcome,
and the fraud labels later; or, with ``--out``, the same traffic as a labelled file.

The traffic is ``models.scenarios``' (seeded: the same seed sends the same traffic):
customers and money mules with wallets, merchants with POS and web terminals, their normal
payments, transfers, withdrawals and deposits, and the five fraud scenarios. Live, it creates
the population through the API, funds the wallets, then sends an open-loop stream at the
asked rate, with a few deliberate overdrafts. Outcomes are read from the pipeline's own
topics (``ledger.events`` and ``transactions.rejected``), so accept→complete latency is
measured without polling the API. Each accepted transaction's label goes out on
``wallet.commands`` after a delay (``walletpipe.labels``); labels the stream dead-letters are
counted from ``wallet.commands.dlq``.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import aiohttp
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from domain import records
from domain.backoff import Backoff
from domain.exceptions import RecordDecodeError
from domain.kafka_clients import hot_path_consumer
from domain.topics import LEDGER_EVENTS, TRANSACTIONS_REJECTED, WALLET_COMMANDS
from models.scenarios import DISPUTE_WINDOW_S, ScenarioConfig, SimTransaction, Simulator
from walletpipe.labels import LabelPublisher, LateLabels, live_delay_s

IN_FLIGHT_MAX = 256
SETTLE_WAIT_S = 60.0
#: A request the API could not answer (503, a dropped connection, a timeout) is sent again
#: with the same Idempotency-Key, after 0.2 s, 0.4 s ... up to RETRY_DELAY_MAX_S, for this
#: long at most; then it counts as unanswered.
RETRY_FOR_S = 60.0
RETRY_DELAY_MAX_S = 2.0
#: Statuses worth retrying: the outcome is unknown or the API asks to come back.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: People created at once: each create holds an API connection to PostgreSQL, and on a
#: loaded box a few hundred at once wait out the API's pool and come back 503.
CREATES_IN_FLIGHT_MAX = 16
#: Identities tried for one simulated person whose create was answered USER_EXISTS.
USER_ATTEMPTS_MAX = 3
#: Share of requests that are deliberate overdrafts (refused by the stream, no money moves).
OVERDRAFT_SHARE = 0.05


@dataclass
class Outcomes:
    """What happened to each accepted transaction, filled from the topics by a thread."""

    accepted_at: dict[str, float] = field(default_factory=dict)
    finished: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    #: Transactions whose fraud label the stream dead-lettered, with the reason.
    labels_dead_lettered: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self, transaction_id: str) -> None:
        with self.lock:
            self.accepted_at[transaction_id] = time.monotonic()

    def finish(self, transaction_id: str, status: str, reason: str) -> None:
        with self.lock:
            self.finished.setdefault(transaction_id, (status, reason, time.monotonic()))

    def label_dead_lettered(self, transaction_id: str, reason: str) -> None:
        with self.lock:
            self.labels_dead_lettered.setdefault(transaction_id, reason)

    def open_count(self) -> int:
        with self.lock:
            return sum(1 for t in self.accepted_at if t not in self.finished)


def watch_outcomes(
    bootstrap: str, outcomes: Outcomes, stop: threading.Event, ready: threading.Event
) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"simulate-{uuid.uuid4()}",
            "enable.auto.commit": False,
            # It waits for answers as the pipeline's own hops do.
            **hot_path_consumer(),
            # A broker restart is waited out quietly (librdkafka reconnects by itself).
            "log_level": KAFKA_LOG_LEVEL,
            "error_cb": quiet_kafka_error,
        }
    )
    partitions = []
    for topic in (LEDGER_EVENTS.name, TRANSACTIONS_REJECTED.name, WALLET_COMMANDS.dead_letter):
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions += [TopicPartition(topic, p, OFFSET_END) for p in metadata.partitions]
    consumer.assign(partitions)
    consumer.consume(1, timeout=1.0)  # resolves the end offsets before traffic starts
    ready.set()
    try:
        while not stop.is_set():
            for message in consumer.consume(1000, timeout=0.2):
                if message.error():
                    continue
                if message.topic() == WALLET_COMMANDS.dead_letter:
                    _dead_lettered_label(message, outcomes)
                    continue
                try:
                    record = records.decode_transaction_record(message.value())
                except RecordDecodeError:
                    continue
                if isinstance(record, records.TransactionPosted):
                    outcomes.finish(str(record.transaction_id), "COMPLETED", "")
                elif isinstance(record, (records.TransactionRejected, records.TransactionFailed)):
                    outcomes.finish(str(record.transaction_id), "FAILED", record.reason_code)
    finally:
        consumer.close()


#: syslog levels: 2 keeps librdkafka's critical lines and drops its per-attempt
#: "connection refused" lines while a broker restarts.
KAFKA_LOG_LEVEL = 2


def quiet_kafka_error(error: object) -> None:
    """Errors of a client that reconnects by itself: nothing to do, nothing to print."""


def _dead_lettered_label(message: object, outcomes: Outcomes) -> None:
    try:
        label = records.decode_fraud_labelled(message.value())  # type: ignore[attr-defined]
    except RecordDecodeError:
        return  # not a label of ours (not even a label)
    headers = dict(message.headers() or [])  # type: ignore[attr-defined]
    reason = headers.get("dlq.reason", b"").decode(errors="replace")
    outcomes.label_dead_lettered(str(label.transaction_id), reason)


@dataclass
class SentLog:
    """Each accepted simulated transaction's scenario (None: legitimate) and amount, and
    how its outcome ended (the reason code of a refusal): what the live report joins with
    the stream's decisions. Deliberate overdrafts are left out (no simulated label)."""

    sent: dict[str, tuple[str | None, Decimal]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


class Traffic:
    """The simulator's population made real (users and wallets through the API) and its
    transactions sent as requests; each accepted one's label is queued for later."""

    def __init__(
        self,
        client: aiohttp.ClientSession,
        outcomes: Outcomes,
        simulator: Simulator,
        labels: LateLabels | None = None,
        label_delay_s: float = 5.0,
    ) -> None:
        self.client = client
        self.outcomes = outcomes
        self.simulator = simulator
        self.labels = labels
        self.label_delay_s = label_delay_s
        self.rng = random.Random(f"overdrafts:{simulator.config.seed}")
        self.wallets: dict[str, str] = {}  # population id -> wallet id
        self.customers: list[str] = []
        self.merchants: list[str] = []
        self.refused: dict[str, int] = {}
        self.scenario_of: dict[str, str] = {}  # transaction id -> fraud scenario
        self.sent = 0
        #: Attempts sent again (same Idempotency-Key), and requests given up on.
        self.retried = 0
        self.unanswered = 0
        self.retry_for_s = RETRY_FOR_S
        self.log = SentLog()

    async def _attempt(self, path: str, body: dict, key: str | None) -> tuple[int, dict]:
        """One POST: (status, body); status 0 when no answer came (connection refused or
        dropped, timed out)."""
        headers = {"Idempotency-Key": key} if key else {}
        try:
            async with self.client.post(path, json=body, headers=headers) as answer:
                payload = await answer.json(content_type=None)
                return answer.status, payload if isinstance(payload, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return 0, {}

    async def _post(self, path: str, body: dict, key: str | None = None) -> dict | None:
        """POST until answered: a request the API did not answer, or answered 503/429,
        is sent again (with the same Idempotency-Key) for ``retry_for_s`` at most. Without
        a key (users, wallets) a retry may make a second one, which the traffic ignores."""
        payload, _code = await self._post_answer(path, body, key)
        return payload

    async def _post_answer(
        self, path: str, body: dict, key: str | None = None
    ) -> tuple[dict | None, str | None]:
        """``_post``'s answer and, when refused, the error code."""
        backoff = Backoff(0.2, RETRY_DELAY_MAX_S)
        deadline = time.monotonic() + self.retry_for_s
        while True:
            status, payload = await self._attempt(path, body, key)
            if status and status not in RETRY_STATUSES:
                break
            if time.monotonic() >= deadline:
                self.unanswered += 1
                return None, None
            self.retried += 1
            await asyncio.sleep(backoff.next_delay())
        if status >= 400:
            code = payload.get("error", {}).get("code", str(status))
            self.refused[code] = self.refused.get(code, 0) + 1
            return None, code
        return payload, None

    async def create_population(self) -> None:
        population = self.simulator.population

        async def person(actor: str, business: bool) -> tuple[str, str | None]:
            # Identities are unique per run (a second run must not collide with the first);
            # everything about the traffic itself follows the seed. A create that timed out
            # and was sent again may find its own first attempt: USER_EXISTS, answered by a
            # new identity (the first one is left unused).
            for _attempt in range(USER_ATTEMPTS_MAX):
                tag = uuid.uuid4()
                user, code = await self._post_answer(
                    "/v1/users",
                    {
                        "email": f"{'shop' if business else 'user'}-{tag.hex[:16]}@example.com",
                        "phone_number": f"+1{tag.int % 10**12:012d}",
                        "password": "correct horse battery",
                        "first_name": "Sim",
                        "last_name": f"{'Shop' if business else 'User'}{actor}",
                        "date_of_birth": "1990-01-01",
                    },
                )
                if code != "USER_EXISTS":
                    break
                self.refused[code] -= 1  # answered by another identity, not refused
                if not self.refused[code]:
                    del self.refused[code]
            if user is None:
                return actor, None
            wallet = await self._post(
                "/v1/wallets",
                {
                    "user_id": user["user_id"],
                    "currency_code": "USD",
                    "wallet_type": "BUSINESS" if business else "PRIMARY",
                },
            )
            return actor, None if wallet is None else wallet["wallet_id"]

        in_flight = asyncio.Semaphore(CREATES_IN_FLIGHT_MAX)

        async def bounded(actor: str, business: bool) -> tuple[str, str | None]:
            async with in_flight:
                return await person(actor, business)

        people = [*population.customers, *population.mules]
        made = await asyncio.gather(
            *[bounded(p.id, False) for p in people],
            *[bounded(m.id, True) for m in population.merchants],
        )
        self.wallets = {actor: wallet for actor, wallet in made if wallet}
        if len(self.wallets) < len(made):
            raise RuntimeError(f"could not create the population; API refused: {self.refused}")
        self.customers = [p.id for p in population.customers]
        self.merchants = [m.id for m in population.merchants]

    def body(self, transaction: SimTransaction) -> dict:
        """The API request for a simulated transaction: facts, never its label."""
        body: dict = {
            "transaction_type": transaction.transaction_type.value,
            "amount": str(transaction.amount),
            "currency_code": "USD",
            "description": transaction.description,
            "metadata": transaction.metadata(),
        }
        if transaction.payer:
            body["source_wallet_id"] = self.wallets[transaction.payer]
        if transaction.payee:
            body["destination_wallet_id"] = self.wallets[transaction.payee]
        return body

    async def submit(self, body: dict, transaction: SimTransaction | None = None) -> None:
        self.sent += 1
        answer = await self._post("/v1/transactions", body, key=str(uuid.uuid4()))
        if answer is None:
            return
        transaction_id = answer["transaction_id"]
        self.outcomes.accepted(transaction_id)
        scenario = transaction.scenario if transaction else None
        if scenario:
            self.scenario_of[transaction_id] = scenario
        if transaction is not None:
            self.log.sent[transaction_id] = (scenario, transaction.amount)
        if self.labels is None:
            return
        # An overdraft attempt is legitimate, and labelled so after the dispute window.
        simulated_delay = transaction.label_delay_s if transaction else DISPUTE_WINDOW_S
        label = records.FraudLabelled(
            transaction_id=transaction_id,
            wallet_id=body.get("source_wallet_id") or body["destination_wallet_id"],
            is_fraud=transaction.is_fraud if transaction else False,
            scenario=scenario,
            labelled_at=records.utc_now(),  # replaced when it is sent
        )
        self.labels.schedule(live_delay_s(simulated_delay, self.label_delay_s), label)

    def next_request(self, traffic: Iterator[SimTransaction]) -> tuple[dict, SimTransaction | None]:
        """The next simulated transaction; now and then a deliberate overdraft instead."""
        if self.rng.random() < OVERDRAFT_SHARE:
            return {
                "transaction_type": "PAYMENT",
                "source_wallet_id": self.wallets[self.rng.choice(self.customers)],
                "destination_wallet_id": self.wallets[self.rng.choice(self.merchants)],
                "amount": "250000.00",  # far more than any simulated wallet holds
                "currency_code": "USD",
                "metadata": {"channel": "WEB"},
            }, None
        transaction = next(traffic)
        return self.body(transaction), transaction


_last_line_at = [0.0]
LOG_PROGRESS_EVERY_S = 5.0


def _progress(label: str, done: int, total: int, extra: str) -> None:
    """A bar redrawn in place on a terminal; a line every few seconds in a log or CI."""
    width = 30
    filled = int(width * done / max(total, 1))
    bar = f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {extra}"
    if sys.stdout.isatty():
        sys.stdout.write(f"\r{bar}")
    elif done >= total or time.monotonic() - _last_line_at[0] >= LOG_PROGRESS_EVERY_S:
        _last_line_at[0] = time.monotonic()
        sys.stdout.write(f"{bar}\n")
    sys.stdout.flush()


async def run_simulation(
    ingest_url: str,
    api_key: str,
    bootstrap: str,
    tps: int,
    seconds: int,
    users: int = 100,
    merchants: int = 8,
    seed: int = 7,
    fraud: bool = True,
    label_delay_s: float | None = 5.0,
    log: SentLog | None = None,
) -> dict:
    """Send ``tps * seconds`` requests; ``label_delay_s`` None sends no labels. ``log``, if
    given, is filled with what was sent and how each ended (for the live report)."""
    simulator = Simulator(ScenarioConfig(users, merchants, seed, fraud))
    outcomes = Outcomes()
    stop, ready = threading.Event(), threading.Event()
    watcher = threading.Thread(
        target=watch_outcomes, args=(bootstrap, outcomes, stop, ready), daemon=True
    )
    watcher.start()
    ready.wait(timeout=30)
    labels = None if label_delay_s is None else LateLabels(LabelPublisher(bootstrap))
    labels_stop = asyncio.Event()
    # aiohttp's client costs a fraction of httpx's CPU: on a 2-core box the load generator
    # must not starve the system it measures.
    async with aiohttp.ClientSession(
        base_url=ingest_url,
        headers={"X-API-Key": api_key},
        timeout=aiohttp.ClientTimeout(total=30),
        connector=aiohttp.TCPConnector(limit=64),
    ) as client:
        traffic = Traffic(client, outcomes, simulator, labels, label_delay_s or 0.0)
        if log is not None:
            traffic.log = log
        labeller = asyncio.create_task(labels.run(labels_stop)) if labels else None
        population = simulator.population
        print(
            f"creating {len(population.customers)} customers, {len(population.mules)} money "
            f"mules and {len(population.merchants)} merchants ..."
        )
        await traffic.create_population()
        print("funding wallets ...")
        await asyncio.gather(
            *[traffic.submit(traffic.body(opening), opening) for opening in simulator.openings()]
        )
        total = tps * seconds
        in_flight = asyncio.Semaphore(IN_FLIGHT_MAX)
        tasks = []
        stream = simulator.traffic()

        async def one(body: dict, transaction: SimTransaction | None) -> None:
            async with in_flight:
                await traffic.submit(body, transaction)

        started = time.monotonic()
        for i in range(total):
            delay = started + i / tps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(*traffic.next_request(stream))))
            if i % max(1, tps // 4) == 0:
                _progress("sending ", i, total, f"completed {len(outcomes.finished)}")
        await asyncio.gather(*tasks)
        send_s = time.monotonic() - started
        _progress("sending ", total, total, f"in {send_s:.1f}s")
        print()
        deadline = time.monotonic() + SETTLE_WAIT_S
        while outcomes.open_count() and time.monotonic() < deadline:
            _progress("settling", len(outcomes.finished), len(outcomes.accepted_at), "")
            await asyncio.sleep(0.25)
        _progress("settling", len(outcomes.finished), len(outcomes.accepted_at), "")
        print()
        if labels is not None and labeller is not None:
            waiting = len(labels.queue)
            print(f"labelling: {waiting} label(s) still due ...")
            labels_stop.set()
            await labeller
            await labels.drain(2 * (label_delay_s or 0.0) + 5.0)
            await asyncio.sleep(1.0)  # the stream dead-letters an unknown label at once
    stop.set()
    watcher.join(timeout=5)
    with outcomes.lock:
        traffic.log.reasons.update({t: f[1] for t, f in outcomes.finished.items() if f[1]})
    return summarize(outcomes, traffic, send_s, labels)


def summarize(
    outcomes: Outcomes, traffic: Traffic, send_s: float, labels: LateLabels | None = None
) -> dict:
    with outcomes.lock:
        accepted = dict(outcomes.accepted_at)
        # Only this run's: the topics also carry outcomes of earlier runs still settling.
        finished = {t: f for t, f in outcomes.finished.items() if t in accepted}
        dead_labels = {t: r for t, r in outcomes.labels_dead_lettered.items() if t in accepted}
    latencies = sorted((finished[t][2] - accepted[t]) * 1000 for t in accepted if t in finished)
    reasons: dict[str, int] = {}
    for status, reason, _at in finished.values():
        if status == "FAILED":
            reasons[reason] = reasons.get(reason, 0) + 1
    fraud_sent: dict[str, int] = {}
    fraud_declined: dict[str, int] = {}
    for transaction_id, scenario in traffic.scenario_of.items():
        fraud_sent[scenario] = fraud_sent.get(scenario, 0) + 1
        if finished.get(transaction_id, ("", "", 0))[1] == "FRAUD_DECLINED":
            fraud_declined[scenario] = fraud_declined.get(scenario, 0) + 1

    def pct(p: float) -> float | None:
        return (
            round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)
            if latencies
            else None
        )

    summary = {
        "sent": traffic.sent,
        "accepted": len(accepted),
        "refused_by_api": traffic.refused,
        "completed": sum(1 for s, _r, _t in finished.values() if s == "COMPLETED"),
        "failed": sum(reasons.values()),
        "failed_by_reason": reasons,
        "still_pending": len(accepted) - len(finished),
        "accepted_per_s": round(len(accepted) / send_s, 1) if send_s else None,
        "latency_ms_p50": pct(0.50),
        "latency_ms_p99": pct(0.99),
        "fraud_sent": dict(sorted(fraud_sent.items())),
        "fraud_declined": dict(sorted(fraud_declined.items())),
    }
    if traffic.retried or traffic.unanswered:  # the API was away for a while
        summary["retried"] = traffic.retried
        summary["unanswered"] = traffic.unanswered
    if labels is not None:
        summary["labels_published"] = labels.publisher.published
        summary["labels_undelivered"] = labels.publisher.failed + len(labels.queue)
        summary["labels_dead_lettered"] = len(dead_labels)
        if dead_labels:
            summary["label_dlq_reason"] = next(iter(dead_labels.values()))
    return summary


def write_labelled_file(
    path: Path, days: int, users: int, merchants: int, seed: int, fraud: bool, start: datetime
) -> dict:
    """The same traffic as a labelled file (``models.dataset``'s format) instead of sending."""
    from models import dataset
    from models.scenarios import to_frame

    simulator = Simulator(ScenarioConfig(users, merchants, seed, fraud))
    transactions = simulator.transactions(days)
    frame = to_frame(transactions, start, seed)
    dataset.write(frame, path)
    by_scenario: dict[str, int] = {}
    for transaction in transactions:
        if transaction.scenario:
            by_scenario[transaction.scenario] = by_scenario.get(transaction.scenario, 0) + 1
    return {
        "file": str(path),
        "transactions": len(transactions),
        "fraud": sum(by_scenario.values()),
        "fraud_share": round(sum(by_scenario.values()) / len(transactions), 4),
        "fraud_by_scenario": dict(sorted(by_scenario.items())),
        "from": str(frame["timestamp"].min()),
        "to": str(frame["timestamp"].max()),
    }


def format_summary(summary: dict) -> str:
    lines = ["", "simulation summary", "------------------"]
    for key, value in summary.items():
        lines.append(f"{key:>20}: {value}")
    return "\n".join(lines)

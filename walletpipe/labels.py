"""Fraud labels as a bank learns them: late. ``walletpipe simulate`` publishes each
transaction's ground truth on ``wallet.commands`` after a delay.

The simulator's delays are realistic (days: ``models.scenarios``); a live run scales them
so that the dispute window (7 days) becomes ``label_delay_s`` seconds, never less than
``LIVE_DELAY_FLOOR_S`` (the stream must have scored the transaction before its label comes).
Waiting labels sit in a bounded queue (``DelayedLabels``): when it is full the earliest
goes out at once (counted as early), so memory stays bounded and no label is dropped.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field

from confluent_kafka import Producer

from domain import records
from domain.topics import WALLET_COMMANDS
from models.scenarios import DISPUTE_WINDOW_S

LABELS_QUEUE_MAX = 100_000
LIVE_DELAY_FLOOR_S = 2.0
FLUSH_TIMEOUT_S = 10.0


def live_delay_s(simulated_delay_s: int, label_delay_s: float) -> float:
    """A simulated delay (seconds, days long) scaled to a live run's ``label_delay_s``."""
    scaled = label_delay_s * simulated_delay_s / DISPUTE_WINDOW_S
    return max(scaled, min(LIVE_DELAY_FLOOR_S, label_delay_s))


@dataclass
class DelayedLabels:
    """A bounded min-heap of labels by due time (monotonic seconds)."""

    size_max: int = LABELS_QUEUE_MAX
    heap: list[tuple[float, int, records.FraudLabelled]] = field(default_factory=list)
    order: itertools.count = field(default_factory=itertools.count)
    early: int = 0

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, due: float, label: records.FraudLabelled) -> list[records.FraudLabelled]:
        """Queue a label; returns what must go out now to stay within ``size_max``."""
        forced = []
        while len(self.heap) >= self.size_max:
            forced.append(heapq.heappop(self.heap)[2])
            self.early += 1
        heapq.heappush(self.heap, (due, next(self.order), label))
        return forced

    def due(self, now: float) -> list[records.FraudLabelled]:
        out = []
        while self.heap and self.heap[0][0] <= now:
            out.append(heapq.heappop(self.heap)[2])
        return out

    def next_due(self) -> float | None:
        return self.heap[0][0] if self.heap else None


class LabelPublisher:
    """Sends labels keyed by their wallet (murmur2, like every keyed topic)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 20,
                "partitioner": "murmur2_random",
                # A broker restart is waited out quietly: the producer reconnects and
                # delivers what it holds (a failed delivery is counted in `failed`).
                "log_level": 2,
                "error_cb": lambda _error: None,
            }
        )
        self.published = 0
        self.failed = 0

    def _delivered(self, error: object, _message: object) -> None:
        if error is not None:
            self.failed += 1

    def publish(self, labels: list[records.FraudLabelled]) -> None:
        """Send labels now, stamped with the time they became known."""
        for waiting in labels:
            label = waiting.model_copy(update={"labelled_at": records.utc_now()})
            self.producer.produce(
                WALLET_COMMANDS.name,
                key=str(label.wallet_id).encode(),
                value=records.encode(label),
                on_delivery=self._delivered,
            )
            self.published += 1
        self.producer.poll(0)

    def flush(self) -> int:
        """Wait for the broker's acknowledgements; the number still undelivered."""
        return int(self.producer.flush(FLUSH_TIMEOUT_S))


class LateLabels:
    """The queue and the publisher together: schedule a label, send each when it is due."""

    def __init__(self, publisher: LabelPublisher, queue: DelayedLabels | None = None) -> None:
        self.publisher = publisher
        self.queue = queue or DelayedLabels()

    def schedule(self, delay_s: float, label: records.FraudLabelled) -> None:
        self.publisher.publish(self.queue.push(time.monotonic() + delay_s, label))

    def send_due(self) -> None:
        self.publisher.publish(self.queue.due(time.monotonic()))

    async def run(self, stop: asyncio.Event, tick_s: float = 0.05) -> None:
        while not stop.is_set():
            self.send_due()
            await asyncio.sleep(tick_s)

    async def drain(self, timeout_s: float) -> None:
        """Send the rest as each falls due (at most ``timeout_s``), then wait for acks."""
        deadline = time.monotonic() + timeout_s
        while len(self.queue) and time.monotonic() < deadline:
            self.send_due()
            await asyncio.sleep(0.05)
        self.send_due()
        self.publisher.flush()

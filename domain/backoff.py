"""Bounded exponential backoff, and a crash-loop window: how long to wait before trying
again, and when repeated failures deserve a loud report.

Every service that loses Kafka or PostgreSQL retries instead of exiting, and the supervisor
restarts a service that did exit; all of them wait by these rules, so a dependency that is
down for minutes costs a few attempts a minute, not a busy loop, and one that comes back is
used again within ``delay_max_s``. Pure: the callers sleep and read clocks.

>>> b = Backoff(initial_s=0.5, delay_max_s=4.0, jitter=0.0)
>>> [b.next_delay() for _ in range(5)]
[0.5, 1.0, 2.0, 4.0, 4.0]
>>> b.reset(); b.next_delay()
0.5
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays that double from ``initial_s`` up to ``delay_max_s``; ``reset`` after a success.

    ``jitter`` (a share, 0..1) takes up to that share off each delay at random, so processes
    that failed together (every consumer when the broker restarts) do not retry in step.
    """

    initial_s: float = 0.2
    delay_max_s: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.delay_max_s:
            raise ValueError("backoff needs 0 < initial_s <= delay_max_s")
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter < 1")

    def next_delay(self) -> float:
        """The wait before the next attempt (the attempt count goes up by one)."""
        exponent = min(self.attempts, 64)  # bounded: the delay is capped long before
        self.attempts += 1
        delay = min(self.delay_max_s, self.initial_s * self.factor**exponent)
        return delay * (1 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempts = 0


@dataclass
class CrashWindow:
    """Exits of one service within the last ``window_s`` seconds; ``looping`` once there
    are ``exits_max`` or more of them (a crash loop, reported with the log's tail)."""

    exits_max: int = 5
    window_s: float = 60.0
    exits: deque[float] = field(default_factory=deque)

    def record(self, at_s: float) -> None:
        self.exits.append(at_s)
        self._forget(at_s)

    def count(self, now_s: float) -> int:
        self._forget(now_s)
        return len(self.exits)

    def looping(self, now_s: float) -> bool:
        return self.count(now_s) >= self.exits_max

    def _forget(self, now_s: float) -> None:
        while self.exits and self.exits[0] <= now_s - self.window_s:
            self.exits.popleft()
        while len(self.exits) > self.exits_max:  # bounded: only "at least N" matters
            self.exits.popleft()

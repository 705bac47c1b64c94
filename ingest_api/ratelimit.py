"""Per-client token buckets: ``rate_limit_per_second`` sustained, twice that in a burst."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

from ingest_api.exceptions import RateLimited

BURST_FACTOR = 2


class RateLimiter:
    def __init__(self, clients_max: int) -> None:
        # client -> (tokens, last refill time); LRU-bounded so unknown load cannot grow it.
        self._buckets: OrderedDict[uuid.UUID, tuple[float, float]] = OrderedDict()
        self._clients_max = clients_max

    def take(self, client_id: uuid.UUID, rate_per_second: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        capacity = float(rate_per_second * BURST_FACTOR)
        tokens, last = self._buckets.get(client_id, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate_per_second)
        allowed = tokens >= 1.0
        self._buckets[client_id] = (tokens - 1.0 if allowed else tokens, now)
        self._buckets.move_to_end(client_id)
        while len(self._buckets) > self._clients_max:
            self._buckets.popitem(last=False)
        if not allowed:
            raise RateLimited(f"more than {rate_per_second} requests per second; retry shortly")

"""A small bounded TTL cache: the API looks up the same API keys and wallets constantly."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """LRU with a time-to-live; never holds more than ``entries_max`` entries."""

    def __init__(self, entries_max: int, ttl_ms: int) -> None:
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._entries_max = entries_max
        self._ttl_s = ttl_ms / 1000

    def get(self, key: K) -> V | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        stored_at, value = hit
        if time.monotonic() - stored_at > self._ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._entries_max:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

"""Small bounded caches: the API looks up the same API keys and wallets constantly."""

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


class RevisionCache(Generic[K, V]):
    """LRU (at most ``entries_max``) trusted only while a revision poller confirms it.

    The same rule as the API keys' cache (domain.access.KeyCache): ``confirm(revision,
    checked_at)`` with the revision read and the monotonic time its query was sent; a new
    revision empties the cache; entries are served only within ``trust_ms`` of the last
    confirmation (a stalled poller or an absent database sends callers to PostgreSQL); a
    value read under an older revision than the current one is not kept.
    """

    def __init__(self, entries_max: int, trust_ms: int) -> None:
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._entries_max = entries_max
        self._trust_s = trust_ms / 1000
        self._revision: int | None = None
        self._confirmed_at = float("-inf")

    def confirm(self, revision: int, checked_at: float) -> None:
        if revision != self._revision:
            self._entries.clear()
            self._revision = revision
        self._confirmed_at = max(self._confirmed_at, checked_at)

    def get(self, key: K) -> V | None:
        if time.monotonic() - self._confirmed_at > self._trust_s:
            return None
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, revision: int) -> None:
        if revision != self._revision:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._entries_max:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

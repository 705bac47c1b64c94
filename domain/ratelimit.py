"""Token buckets kept in one shared block of memory, so that every process of a service on
a host draws from the same bucket: a client's limit is the same with one API process or
several.

Pure: the table works on any writable buffer; the services map a file in ``/dev/shm`` as
that buffer and hold a lock (``flock``) around each call (ingest_api/ratelimit.py,
analytics/ratelimit.py). Times are ``time.monotonic()`` seconds, one clock for every
process of the host.

A bucket holds up to ``burst`` tokens and refills ``rate`` per second; a request takes one.
The table is a fixed number of slots, open addressing over a short probe window: a bucket
is found by the 16-byte digest of its name (``client:<id>``, ``key:<id>``, ``addr:<ip>``).
A slot whose bucket has refilled completely is as good as empty and is reused; when a window
has no such slot, the bucket closest to full is evicted (its owner gets a full bucket back,
the only leniency of a full table). Memory never grows.

    >>> table = BucketTable(bytearray(BucketTable.size_for(64)))
    >>> table.format(64)
    >>> limit = Limit(bucket_digest("client:a"), rate_per_second=1, burst=2)
    >>> [table.take([limit], now=10.0).allowed for _ in range(3)]
    [True, True, False]
    >>> table.take([limit], now=11.0).allowed
    True
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from typing import NamedTuple

MAGIC = b"WPRLIM01"
_HEADER = struct.Struct("<8sII")  # magic, slots, probe window
HEADER_SIZE = 64
_SLOT = struct.Struct("<16sddd")  # digest, tokens, updated (monotonic s), full again at
SLOT_SIZE = _SLOT.size
PROBES = 8
_EMPTY = bytes(16)


def bucket_digest(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=16).digest()


class Limit(NamedTuple):
    """One bucket a request draws from."""

    digest: bytes
    rate_per_second: float
    burst: int


class Decision(NamedTuple):
    """The outcome of a take, with what the RateLimit headers tell the caller: ``limit``
    (the binding bucket's capacity), ``remaining`` tokens, ``reset_s`` until it is full
    again, and ``retry_after_s`` until one token is there (0 when allowed)."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """The IETF draft's RateLimit fields, and Retry-After when refused."""
        fields = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            fields["Retry-After"] = str(self.retry_after_s)
        return fields


class LimitTableError(Exception):
    """The shared file is not a bucket table of this version. Operator: remove the file
    named in the message (it holds only rate-limit state) and restart the service."""


class BucketTable:
    def __init__(self, buffer: bytearray | memoryview) -> None:
        self._buffer = buffer
        self._slots = 0

    @staticmethod
    def size_for(slots: int) -> int:
        return HEADER_SIZE + (slots + PROBES) * SLOT_SIZE

    def format(self, slots: int) -> None:
        """Write an empty table (the caller holds the lock and sized the buffer)."""
        if len(self._buffer) < self.size_for(slots):
            raise LimitTableError(f"{len(self._buffer)} bytes cannot hold {slots} slots")
        self._buffer[: self.size_for(slots)] = bytes(self.size_for(slots))
        _HEADER.pack_into(self._buffer, 0, MAGIC, slots, PROBES)
        self._slots = slots

    def attach(self) -> int:
        """Read the header of a table another process formatted; its slot count."""
        magic, slots, probes = _HEADER.unpack_from(self._buffer, 0)
        if magic != MAGIC or probes != PROBES or len(self._buffer) < self.size_for(slots):
            raise LimitTableError("not a rate-limit table of this version")
        self._slots = int(slots)
        return self._slots

    def is_formatted(self) -> bool:
        return bytes(self._buffer[: len(MAGIC)]) == MAGIC

    def take(self, limits: Sequence[Limit], now: float) -> Decision:
        """Take one token from every bucket, or none if any bucket is empty."""
        if len(limits) == 1:  # the usual request: its client's bucket alone
            limit = limits[0]
            offset, tokens = self._refill(limit, now, ())
            if tokens < 1.0:
                return _refused(limit, tokens)
            self._write(offset, limit, tokens - 1.0, now)
            return _allowed(limit, tokens - 1.0)
        taken: list[int] = []
        found = []
        for limit in limits:
            found.append(self._refill(limit, now, taken))
            taken.append(found[-1][0])
        binding = min(range(len(found)), key=lambda i: found[i][1])
        tokens = found[binding][1]
        if tokens < 1.0:
            return _refused(limits[binding], tokens)
        for (slot, left), each in zip(found, limits, strict=True):
            self._write(slot, each, left - 1.0, now)
        return _allowed(limits[binding], tokens - 1.0)

    def give_back(self, limit: Limit, now: float) -> None:
        """Return a token taken for work that turned out not to count (a key that was
        valid after all, when only failed authentications are limited)."""
        slot, tokens = self._refill(limit, now, ())
        self._write(slot, limit, min(float(limit.burst), tokens + 1.0), now)

    def _refill(self, limit: Limit, now: float, taken: Sequence[int]) -> tuple[int, float]:
        """(slot offset, tokens now) of ``limit``'s bucket, or of the slot it will take
        (none of ``taken``, the slots of the other buckets of the same request)."""
        offset = self._slot_of(limit.digest, now, taken)
        digest, tokens, updated, _full_at = _SLOT.unpack_from(self._buffer, offset)
        burst = float(limit.burst)
        if digest != limit.digest or not 0.0 <= tokens <= burst or updated > now + 1.0:
            # New, torn by a killed process, or from another boot's clock: start full.
            return offset, burst
        return offset, min(burst, tokens + max(0.0, now - updated) * limit.rate_per_second)

    def _slot_of(self, digest: bytes, now: float, taken: Sequence[int]) -> int:
        if not self._slots:
            self.attach()
        home = int.from_bytes(digest[:8], "little") % self._slots
        first = HEADER_SIZE + home * SLOT_SIZE
        if bytes(self._buffer[first : first + 16]) == digest:  # most buckets sit in their home slot
            return first
        reusable = -1
        fullest_at, fullest = math.inf, first
        for offset in range(first, first + PROBES * SLOT_SIZE, SLOT_SIZE):
            held, _tokens, _updated, full_at = _SLOT.unpack_from(self._buffer, offset)
            if held == digest:
                return offset
            if offset in taken:
                continue
            if reusable < 0 and (held == _EMPTY or full_at <= now):
                reusable = offset
            if full_at < fullest_at:
                fullest_at, fullest = full_at, offset
        return reusable if reusable >= 0 else fullest

    def _write(self, offset: int, limit: Limit, tokens: float, now: float) -> None:
        full_at = now + _full_in(limit, tokens)
        _SLOT.pack_into(self._buffer, offset, limit.digest, tokens, now, full_at)


def _allowed(limit: Limit, tokens: float) -> Decision:
    return Decision(True, limit.burst, int(tokens), _ceil(_full_in(limit, tokens)), 0)


def _refused(limit: Limit, tokens: float) -> Decision:
    wait = (1.0 - tokens) / limit.rate_per_second
    return Decision(False, limit.burst, 0, _ceil(_full_in(limit, tokens)), _ceil(wait))


def _full_in(limit: Limit, tokens: float) -> float:
    return max(0.0, limit.burst - tokens) / limit.rate_per_second


def _ceil(seconds: float) -> int:
    return max(0, math.ceil(seconds - 1e-9))

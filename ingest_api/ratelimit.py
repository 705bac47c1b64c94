"""Rate limits that hold across the API's processes on a host: every uvicorn process maps
the same file (``/dev/shm`` by default) holding one token-bucket table (domain/ratelimit.py)
and takes a file lock for the few microseconds of each update. No database round trip.

Three kinds of bucket:
- ``client:<id>``: every key of a client together (``api_clients.rate_limit_per_second``);
- ``key:<id>``: one key, when it has a limit of its own (``api_keys.rate_limit_per_second``);
- ``addr:<ip>``: the PostgreSQL lookups of keys not in the cache, per client address, taken
  *before* the lookup and given back when the key was valid: only failed authentications
  (unknown, revoked, expired keys) use it up.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import mmap
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

from domain.access import KeyGrant, burst_of
from domain.ratelimit import BucketTable, Decision, Limit, bucket_digest
from ingest_api.exceptions import RateLimited


def default_table_path(service: str, scope: str) -> Path:
    """One file per service and stack (``scope`` is its DATABASE_URL): two stacks on one
    host never share buckets."""
    folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    tag = hashlib.sha256(scope.encode()).hexdigest()[:16]
    return folder / f"walletpipe-{service}-{tag}.buckets"


class SharedBuckets:
    """The mapped table; safe across processes (flock) and threads (a lock)."""

    def __init__(self, path: Path, slots: int) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._thread_lock = threading.Lock()
        with self._locked_file():
            if os.fstat(self._fd).st_size == 0:  # new: the first process sizes it
                os.ftruncate(self._fd, BucketTable.size_for(slots))
            self._map = mmap.mmap(self._fd, os.fstat(self._fd).st_size)
            self._table = BucketTable(self._map)
            if self._table.is_formatted():
                self._table.attach()
            else:
                self._table.format(slots)

    def _locked_file(self) -> _FileLock:
        return _FileLock(self._fd)

    def take(self, limits: list[Limit], now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        with self._thread_lock, self._locked_file():
            return self._table.take(limits, now)

    def give_back(self, limit: Limit, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._thread_lock, self._locked_file():
            self._table.give_back(limit, now)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class _FileLock:
    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=65_536)
def _limit(kind: str, owner: uuid.UUID, rate_per_second: int, burst: int) -> Limit:
    """A client's or key's bucket; made once per owner and limit (hashing is not free)."""
    return Limit(bucket_digest(f"{kind}:{owner}"), rate_per_second, burst)


class RateLimiter:
    """The API's limits over ``SharedBuckets``; raises ``RateLimited`` with the headers."""

    def __init__(
        self, buckets: SharedBuckets, *, auth_failures_per_second: float, auth_failures_burst: int
    ) -> None:
        self._buckets = buckets
        self._auth_rate = auth_failures_per_second
        self._auth_burst = auth_failures_burst

    def take_request(self, grant: KeyGrant) -> None:
        """One request of ``grant``'s key: from its client's bucket, and its own if it has one."""
        limits = [
            _limit("client", grant.client_id, grant.client_rate_per_second, grant.client_burst)
        ]
        if grant.key_rate_per_second is not None:
            burst = burst_of(grant.key_rate_per_second, grant.key_burst)
            limits.append(_limit("key", grant.key_id, grant.key_rate_per_second, burst))
        decision = self._buckets.take(limits)
        if not decision.allowed:
            raise RateLimited(
                f"more than {decision.limit} requests in a burst; retry after "
                f"{decision.retry_after_s} s",
                headers=decision.headers(),
            )

    def _address(self, address: str) -> Limit:
        return Limit(bucket_digest(f"addr:{address}"), self._auth_rate, self._auth_burst)

    def take_key_lookup(self, address: str) -> None:
        """Before asking PostgreSQL about a key: refuse an address that keeps failing."""
        decision = self._buckets.take([self._address(address)])
        if not decision.allowed:
            raise RateLimited(
                "too many failed authentications from this address; retry after "
                f"{decision.retry_after_s} s",
                code="AUTH_RATE_LIMITED",
                headers=decision.headers(),
            )

    def give_back_key_lookup(self, address: str) -> None:
        """The key was valid: its lookup does not count against the address."""
        self._buckets.give_back(self._address(address))

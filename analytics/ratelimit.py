"""Rate limits of the reporting API: per client (and per key with a limit of its own), and
key lookups per client address, so unknown or revoked keys are refused before PostgreSQL
is asked once they keep failing.

The buckets are the core's shared table (domain/ratelimit.py) in a file of this service
(``/dev/shm/walletpipe-analytics-<hash of DATABASE_URL>.buckets``), mapped and locked as
the ingest API maps its own: the services share the core, not code, and not budgets (a
client's reports do not use up its payments).
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import tempfile
import threading
import time
from pathlib import Path

from analytics.exceptions import RateLimited
from domain.access import KeyGrant, burst_of
from domain.ratelimit import BucketTable, Decision, Limit, bucket_digest


def default_table_path(scope: str) -> Path:
    folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    tag = hashlib.sha256(scope.encode()).hexdigest()[:16]
    return folder / f"walletpipe-analytics-{tag}.buckets"


class ReportLimiter:
    """Thread-safe (the reports run in a thread pool) and process-safe (flock)."""

    def __init__(
        self, path: Path, slots: int, *, auth_failures_per_second: float, auth_failures_burst: int
    ) -> None:
        self.path = path
        self._auth_rate, self._auth_burst = auth_failures_per_second, auth_failures_burst
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size == 0:  # new: the first process sizes it
                os.ftruncate(self._fd, BucketTable.size_for(slots))
            self._map = mmap.mmap(self._fd, os.fstat(self._fd).st_size)
            self._table = BucketTable(self._map)
            if self._table.is_formatted():
                self._table.attach()
            else:
                self._table.format(slots)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _take(self, limits: list[Limit]) -> Decision:
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                return self._table.take(limits, time.monotonic())
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def take_request(self, grant: KeyGrant) -> None:
        limits = [
            Limit(
                bucket_digest(f"client:{grant.client_id}"),
                grant.client_rate_per_second,
                grant.client_burst,
            )
        ]
        if grant.key_rate_per_second is not None:
            burst = burst_of(grant.key_rate_per_second, grant.key_burst)
            limits.append(
                Limit(bucket_digest(f"key:{grant.key_id}"), grant.key_rate_per_second, burst)
            )
        decision = self._take(limits)
        if not decision.allowed:
            raise RateLimited(
                f"more than {decision.limit} reports in a burst; retry after "
                f"{decision.retry_after_s} s",
                headers=decision.headers(),
            )

    def _address(self, address: str) -> Limit:
        return Limit(bucket_digest(f"addr:{address}"), self._auth_rate, self._auth_burst)

    def take_key_lookup(self, address: str) -> None:
        decision = self._take([self._address(address)])
        if not decision.allowed:
            raise RateLimited(
                "too many failed authentications from this address; retry after "
                f"{decision.retry_after_s} s",
                code="AUTH_RATE_LIMITED",
                headers=decision.headers(),
            )

    def give_back_key_lookup(self, address: str) -> None:
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._table.give_back(self._address(address), time.monotonic())
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

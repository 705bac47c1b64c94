"""Reporting keys in PostgreSQL's ``api_clients``: look one up (briefly cached), make one.

The table is shared with the ingest API; keys are stored as sha256 hex, and a key is shown
only once, when it is made.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid

import psycopg
from psycopg_pool import ConnectionPool

from analytics.auth import Principal, Role, hash_api_key
from analytics.exceptions import AnalyticsError, AuthenticationError, AuthUnavailable

CONNECT_TIMEOUT_S = 5
POOL_SIZE_MAX = 2
KEY_ROLES = (Role.ANALYST, Role.REGULATOR, Role.ADMIN)
API_KEY_LENGTH_MAX = 200


class ClientDirectory:
    """API key → ``Principal``. Known keys are cached for ``cache_s``; unknown ones are not,
    so a key works as soon as it is made."""

    def __init__(self, database_url: str, *, cache_s: float, entries_max: int) -> None:
        self._pool = ConnectionPool(
            database_url,
            min_size=1,
            max_size=POOL_SIZE_MAX,
            timeout=CONNECT_TIMEOUT_S,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
            name="analytics-clients",
        )
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._cache_s = cache_s
        self._entries_max = entries_max
        self._lock = threading.Lock()

    def open(self) -> None:
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    def principal(self, api_key: str | None) -> Principal | None:
        """None without a key; ``AuthenticationError`` for a key nobody holds."""
        if not api_key:
            return None
        if len(api_key) > API_KEY_LENGTH_MAX:
            raise AuthenticationError("this API key is not known")
        key_hash = hash_api_key(api_key)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_hash)
        if cached and cached[0] > now:
            return cached[1]
        found = self._lookup(key_hash)
        if found is None:
            raise AuthenticationError("this API key is not known")
        with self._lock:
            if len(self._cache) >= self._entries_max:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key_hash] = (now + self._cache_s, found)
        return found

    def _lookup(self, key_hash: str) -> Principal | None:
        try:
            with self._pool.connection() as conn:
                row = conn.execute(
                    "SELECT client_id, name, role FROM api_clients WHERE api_key_hash = %s",
                    (key_hash,),
                ).fetchone()
        except (psycopg.OperationalError, TimeoutError) as error:
            raise AuthUnavailable(f"cannot reach PostgreSQL to check the key: {error}") from None
        if row is None:
            return None
        return Principal(client_id=str(row[0]), name=row[1], role=Role(row[2]))


def create_api_key(
    database_url: str, *, name: str, role: Role, rate_limit_per_second: int = 100
) -> str:
    """Register a reporting client and return its key (the only time it is shown)."""
    if role not in KEY_ROLES:
        raise AnalyticsError(f"reporting keys are for {[r.value for r in KEY_ROLES]}")
    if not name.strip() or len(name) > 100:
        raise AnalyticsError("a key needs a name of 1 to 100 characters", code="INVALID_NAME")
    api_key = f"wp_{role.value}_{secrets.token_urlsafe(24)}"
    try:
        with psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute(
                "INSERT INTO api_clients "
                "(client_id, name, api_key_hash, role, rate_limit_per_second, created_at) "
                "VALUES (%s, %s, %s, %s, %s, now())",
                (uuid.uuid4(), name, hash_api_key(api_key), role.value, rate_limit_per_second),
            )
    except psycopg.errors.UniqueViolation:
        raise AnalyticsError(
            f"a client named {name!r} exists already; pick another name", code="CLIENT_EXISTS"
        ) from None
    return api_key

"""Reporting keys in PostgreSQL's ``api_keys`` (shared with the ingest API): look one up,
limit its caller, and issue one (for the reporting CLI and tests).

A looked-up key is cached in a ``domain.access.KeyCache``: a thread reads
``api_key_revision`` every ``api_key_revision_poll_ms`` and the cache trusts its entries for
``api_key_trust_ms`` (<= 1 s) after the last read, so a revoked key stops here within a
second, as in the ingest API; an expiry is checked against the clock on every request. A
key not in the cache is looked up only if the caller's address has a token for it
(analytics/ratelimit.py): failing keys are limited before any database work.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from analytics.auth import Principal
from analytics.exceptions import AnalyticsError, AuthenticationError, AuthUnavailable
from analytics.ratelimit import ReportLimiter, default_table_path
from analytics.settings import AnalyticsSettings
from domain.access import (
    API_KEY_LENGTH_MAX,
    REFUSALS,
    KeyCache,
    KeyGrant,
    KeyLookup,
    Role,
    display_prefix,
    hash_api_key,
    new_api_key,
)

log = logging.getLogger("analytics.clients")

CONNECT_TIMEOUT_S = 5
POOL_SIZE_MAX = 3
KEY_ROLES = (Role.ANALYST, Role.COMPLIANCE, Role.REGULATOR, Role.ADMIN)


class ClientDirectory:
    """API key → ``Principal``, limited (``ReportLimiter``) and cached (``KeyCache``)."""

    def __init__(self, settings: AnalyticsSettings) -> None:
        self._pool = ConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=POOL_SIZE_MAX,
            timeout=CONNECT_TIMEOUT_S,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
            name="analytics-clients",
        )
        self._cache = KeyCache(settings.api_key_cache_entries_max, settings.api_key_trust_ms)
        self._cache_lock = threading.Lock()
        self._poll_s = settings.api_key_revision_poll_ms / 1000
        path = settings.rate_limit_file or default_table_path(settings.database_url)
        self.limiter = ReportLimiter(
            Path(path),
            settings.rate_limit_slots,
            auth_failures_per_second=settings.auth_failures_per_second,
            auth_failures_burst=settings.auth_failures_burst,
        )
        self._stop = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch_revisions, name="api-key-revisions", daemon=True
        )

    def open(self) -> None:
        self._pool.open(wait=False)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        self._pool.close()
        self.limiter.close()

    def principal(self, api_key: str | None, address: str = "unknown") -> Principal | None:
        """None without a key; ``AuthenticationError`` for a key that is not valid."""
        if not api_key:
            return None
        if len(api_key) > API_KEY_LENGTH_MAX:
            raise AuthenticationError("this API key is not known")
        key_hash = hash_api_key(api_key)
        with self._cache_lock:
            grant = self._cache.get(key_hash)
            guess = grant is None and not self._cache.known(key_hash)
        if grant is None:
            grant = self._look_up(key_hash, address, guess=guess)
        if grant.expired(time.time()):
            raise AuthenticationError(REFUSALS["API_KEY_EXPIRED"], code="API_KEY_EXPIRED")
        self.limiter.take_request(grant)
        return Principal(str(grant.client_id), grant.client_name, grant.roles, grant)

    def _look_up(self, key_hash: str, address: str, *, guess: bool) -> KeyGrant:
        """``guess``: the key is not one the cache held at its last confirmed revision, so
        its lookup spends the address's lookup budget (domain.access.KeyCache.known)."""
        if guess:
            self.limiter.take_key_lookup(address)
        sent_at = time.monotonic()
        try:
            with self._pool.connection() as conn:
                row = (
                    conn.cursor(row_factory=dict_row)
                    .execute("SELECT * FROM api_key_grants WHERE key_hash = %s", (key_hash,))
                    .fetchone()
                )
        except (psycopg.OperationalError, TimeoutError) as error:
            if guess:
                self.limiter.give_back_key_lookup(address)
            raise AuthUnavailable(f"cannot reach PostgreSQL to check the key: {error}") from None
        if row is None:
            raise AuthenticationError("this API key is not known")
        found = KeyLookup.from_row(row)
        if found.grant is None:
            assert found.refusal is not None
            raise AuthenticationError(REFUSALS[found.refusal], code=found.refusal)
        if guess:
            self.limiter.give_back_key_lookup(address)
        grant = found.grant
        with self._cache_lock:
            # The grant view carries the revision it was read under: as good as the poller's
            # read, so a cache the poller has not confirmed yet can keep this grant.
            self._cache.confirm(found.revision, sent_at)
            self._cache.put(key_hash, grant, found.revision)
        return grant

    def check_revision(self) -> None:
        sent_at = time.monotonic()
        with self._pool.connection() as conn:
            row = conn.execute("SELECT revision FROM api_key_revision").fetchone()
        with self._cache_lock:
            self._cache.confirm(int(row[0]) if row else 0, sent_at)

    def _watch_revisions(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_revision()
            except Exception as error:  # noqa: BLE001 - keep watching; the cache stops trusting
                log.warning("cannot read api_key_revision: %s", error)
            self._stop.wait(self._poll_s)


def create_api_key(
    database_url: str, *, name: str, role: Role, rate_limit_per_second: int = 100
) -> str:
    """Issue a reporting key of the client ``name`` (made if new) and return it (the only
    time it is shown), through the database's ``api_key_issue`` as every tool does."""
    if role not in KEY_ROLES:
        raise AnalyticsError(f"reporting keys are for {[r.value for r in KEY_ROLES]}")
    if not name.strip() or len(name) > 100:
        raise AnalyticsError("a key needs a name of 1 to 100 characters", code="INVALID_NAME")
    api_key = new_api_key()
    with psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(
            "SELECT api_key_issue(p_client_name => %s, p_key_hash => %s, p_key_prefix => %s,"
            " p_roles => %s, p_label => 'reports', p_client_rate_limit => %s)",
            (
                name,
                hash_api_key(api_key),
                display_prefix(api_key),
                [role.value],
                rate_limit_per_second,
            ),
        )
    return api_key

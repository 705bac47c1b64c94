"""Who is calling: API key → ``KeyGrant``, in memory on the hot path.

A request's key is hashed and found in the ``KeyCache``; a cached key costs no database
work. A key not in the cache costs one PostgreSQL lookup, but only after the caller's
address has a token for it (``RateLimiter.take_key_lookup``): unknown, revoked and expired
keys are limited per address before any database work. A key the cache holds but no longer
trusts (the revision poller is late) is re-read without that token: it was valid at the last
confirmed revision, so its lookup is no guess, and a busy moment must not lock out clients
whose address also sent wrong keys. Then every request takes a token from its client's (and
key's) shared bucket.

``watch_revisions`` reads ``api_key_revision`` every ``api_key_revision_poll_ms``; the
cache trusts its entries only for ``api_key_trust_ms`` after the last read (<= 1 s), so a
revocation or any change of a key or client is in force in every process within that
time. Expiry needs no read: it is checked against the clock on every request.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from psycopg_pool import AsyncConnectionPool

from domain.access import API_KEY_LENGTH_MAX, REFUSALS, KeyCache, KeyGrant, hash_api_key
from ingest_api import key_store
from ingest_api.exceptions import NotAccepted, Unauthorized
from ingest_api.ratelimit import RateLimiter

log = logging.getLogger("ingest_api.authentication")


class Authenticator:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        limiter: RateLimiter,
        *,
        cache_entries_max: int,
        trust_ms: int,
        poll_ms: int,
    ) -> None:
        self._pool = pool
        self._limiter = limiter
        self._cache = KeyCache(cache_entries_max, trust_ms)
        self._poll_s = poll_ms / 1000

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    async def authenticate(self, api_key: str | None, address: str) -> KeyGrant:
        if not api_key:
            raise Unauthorized("send your API key in the X-API-Key header", code="MISSING_API_KEY")
        if len(api_key) > API_KEY_LENGTH_MAX:  # none of ours is: no need to ask anyone
            raise Unauthorized("unknown API key")
        key_hash = hash_api_key(api_key)
        grant = self._cache.get(key_hash)
        if grant is None:
            grant = await self._look_up(key_hash, address, guess=not self._cache.known(key_hash))
        if grant.expired(time.time()):
            raise Unauthorized(REFUSALS["API_KEY_EXPIRED"], code="API_KEY_EXPIRED")
        self._limiter.take_request(grant)
        return grant

    async def _look_up(self, key_hash: str, address: str, *, guess: bool) -> KeyGrant:
        if guess:
            self._limiter.take_key_lookup(address)
        sent_at = time.monotonic()
        try:
            async with self._pool.connection() as conn:
                found = await key_store.lookup(conn, key_hash)
        except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as error:
            if guess:
                self._limiter.give_back_key_lookup(address)  # not the caller's failure
            raise NotAccepted(f"cannot check the API key: {error}") from None
        if found is None:
            raise Unauthorized("unknown API key")
        if found.grant is None:
            assert found.refusal is not None
            raise Unauthorized(REFUSALS[found.refusal], code=found.refusal)
        if guess:
            self._limiter.give_back_key_lookup(address)
        # The grant view carries the revision it was read under: as good as the poller's
        # read, so a cache the poller has not confirmed yet can keep this grant.
        self._cache.confirm(found.revision, sent_at)
        self._cache.put(key_hash, found.grant, found.revision)
        return found.grant

    async def check_revision(self) -> None:
        """One read of the revision; the time taken is the moment the query was sent."""
        sent_at = time.monotonic()
        async with self._pool.connection() as conn:
            revision = await key_store.revision(conn)
        self._cache.confirm(revision, sent_at)

    async def watch_revisions(self) -> None:
        """Forever (a task of the app's lifespan); a failed read leaves the cache
        untrusted after ``trust_ms``, so requests then ask PostgreSQL themselves."""
        while True:
            try:
                await self.check_revision()
            except Exception as error:  # noqa: BLE001 - keep watching; the cache stops trusting
                log.warning("cannot read api_key_revision: %s", error)
            await asyncio.sleep(self._poll_s)

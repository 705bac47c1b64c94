"""ingest_api.authentication without PostgreSQL: a stand-in pool counts the database work,
so the tests show which requests cost a lookup and which are refused before one."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from domain.access import hash_api_key
from ingest_api.authentication import Authenticator
from ingest_api.exceptions import ApiError, RateLimited, Unauthorized
from ingest_api.ratelimit import RateLimiter, SharedBuckets


class Directory:
    """What the stand-in database knows: rows of ``api_key_grants`` by key hash."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.revision = 1
        self.lookups = 0

    def add(
        self, key: str, *, refusal: str | None = None, expires_at_s: float | None = None
    ) -> None:
        self.rows[hash_api_key(key)] = {
            "key_id": uuid.uuid4(),
            "client_id": uuid.uuid4(),
            "client_name": "c",
            "roles": ["pos"],
            "expires_at_s": expires_at_s,
            "client_rate_per_second": 1000,
            "client_burst": None,
            "key_rate_per_second": None,
            "key_burst": None,
            "refusal": refusal,
        }


class Cursor:
    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._row: Any = None

    async def execute(self, query: str, params: tuple = ()) -> Cursor:
        if "api_key_grants" in query:
            self._directory.lookups += 1
            found = self._directory.rows.get(params[0])
            self._row = None if found is None else {**found, "revision": self._directory.revision}
        else:
            self._row = (self._directory.revision,)
        return self

    async def fetchone(self) -> Any:
        return self._row


class Connection:
    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    def cursor(self, row_factory: Any = None) -> Cursor:
        return Cursor(self._directory)

    async def execute(self, query: str, params: tuple = ()) -> Cursor:
        return await Cursor(self._directory).execute(query, params)


class Pool:
    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        yield Connection(self._directory)


@pytest.fixture
def directory() -> Directory:
    return Directory()


def authenticator(directory: Directory, path: Path, trust_ms: int = 900) -> Authenticator:
    limiter = RateLimiter(
        SharedBuckets(path, 256), auth_failures_per_second=0.01, auth_failures_burst=3
    )
    pool: Any = Pool(directory)
    made = Authenticator(pool, limiter, cache_entries_max=100, trust_ms=trust_ms, poll_ms=200)
    asyncio.run(made.check_revision())
    return made


@pytest.fixture
def auth(directory: Directory, tmp_path: Path) -> Authenticator:
    return authenticator(directory, tmp_path / "buckets")


def run(auth: Authenticator, key: str | None, address: str = "10.0.0.1") -> Any:
    return asyncio.run(auth.authenticate(key, address))


def code(auth: Authenticator, key: str | None, address: str = "10.0.0.1") -> str:
    with pytest.raises(ApiError) as caught:
        run(auth, key, address)
    return caught.value.code


def test_a_cached_key_costs_no_database_work(auth: Authenticator, directory: Directory) -> None:
    directory.add("wp_good")
    for _ in range(5):
        assert run(auth, "wp_good").client_name == "c"
    assert directory.lookups == 1


def test_failing_keys_are_refused_per_address_before_any_lookup(
    auth: Authenticator, directory: Directory
) -> None:
    directory.add("wp_revoked", refusal="API_KEY_REVOKED")
    directory.add("wp_valid")
    assert [code(auth, k) for k in ("wp_unknown", "wp_revoked", "wp_other")] == [
        "INVALID_API_KEY",
        "API_KEY_REVOKED",
        "INVALID_API_KEY",
    ]
    assert directory.lookups == 3
    with pytest.raises(RateLimited) as caught:
        run(auth, "wp_more")
    assert caught.value.code == "AUTH_RATE_LIMITED" and caught.value.headers
    assert "Retry-After" in caught.value.headers
    assert code(auth, "wp_valid") == "AUTH_RATE_LIMITED"  # valid, but never asked about
    assert directory.lookups == 3
    assert run(auth, "wp_valid", address="10.0.0.2").client_name == "c"  # another address


def test_valid_lookups_do_not_use_up_the_address(auth: Authenticator, directory: Directory) -> None:
    for n in range(10):
        directory.add(f"wp_{n}")
        run(auth, f"wp_{n}")
    assert directory.lookups == 10
    assert code(auth, "wp_nobody") == "INVALID_API_KEY"


def test_a_new_revision_sends_requests_to_the_database(
    auth: Authenticator, directory: Directory
) -> None:
    directory.add("wp_good")
    run(auth, "wp_good")
    directory.revision += 1  # a key changed somewhere
    asyncio.run(auth.check_revision())
    run(auth, "wp_good")
    run(auth, "wp_good")
    assert directory.lookups == 2


def test_without_a_fresh_revision_read_every_request_asks(
    directory: Directory, tmp_path: Path
) -> None:
    """trust_ms=0: the last read is always too old, as when the poller cannot reach
    PostgreSQL; the cache then serves nothing."""
    auth = authenticator(directory, tmp_path / "buckets", trust_ms=0)
    directory.add("wp_good")
    for _ in range(3):
        run(auth, "wp_good")
    assert directory.lookups == 3


def test_expiry_is_checked_on_every_request_without_the_database(
    auth: Authenticator, directory: Directory
) -> None:
    directory.add("wp_brief", expires_at_s=time.time() + 0.3)
    run(auth, "wp_brief")
    time.sleep(0.35)
    asyncio.run(auth.check_revision())  # the cache is trusted: no lookup needed
    assert code(auth, "wp_brief") == "API_KEY_EXPIRED"
    assert directory.lookups == 1


def test_no_key_and_absurd_keys_cost_nothing(auth: Authenticator, directory: Directory) -> None:
    assert code(auth, None) == "MISSING_API_KEY"
    with pytest.raises(Unauthorized):
        run(auth, "x" * 10_000)
    assert directory.lookups == 0

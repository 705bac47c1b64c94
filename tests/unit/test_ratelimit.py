"""Token buckets in one shared table (domain/ratelimit.py) and the file both APIs map
(ingest_api/ratelimit.py): bursts, refills, several buckets per request, bounded memory,
headers, and two mappings of one file drawing from the same buckets."""

from __future__ import annotations

import math
import multiprocessing
import time
import uuid
from pathlib import Path

import pytest

from domain.access import KeyGrant, Role
from domain.ratelimit import BucketTable, Limit, LimitTableError, bucket_digest
from ingest_api.exceptions import RateLimited
from ingest_api.ratelimit import RateLimiter, SharedBuckets


def table(slots: int = 64) -> BucketTable:
    made = BucketTable(bytearray(BucketTable.size_for(slots)))
    made.format(slots)
    return made


def limit(name: str = "client:a", rate: float = 5, burst: int = 10) -> Limit:
    return Limit(bucket_digest(name), rate, burst)


def test_a_burst_then_refused_with_headers() -> None:
    buckets, each = table(), limit(rate=5, burst=10)
    for n in range(10):
        decision = buckets.take([each], now=100.0)
        assert decision.allowed and decision.remaining == 9 - n
    refused = buckets.take([each], now=100.0)
    assert not refused.allowed
    assert refused.headers() == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2",  # 10 tokens at 5 a second
        "Retry-After": "1",
    }


def test_refills_over_time_and_never_beyond_the_burst() -> None:
    buckets, each = table(), limit(rate=5, burst=10)
    for _ in range(10):
        buckets.take([each], now=0.0)
    assert not buckets.take([each], now=0.1).allowed  # half a token back: not enough
    assert buckets.take([each], now=0.2).allowed  # one token back since t=0
    assert not buckets.take([each], now=0.2).allowed
    assert [buckets.take([each], now=60.0).allowed for _ in range(11)] == [True] * 10 + [False]


def test_sustains_exactly_the_rate() -> None:
    buckets, each = table(), limit(rate=8, burst=16)
    for _ in range(16):
        assert buckets.take([each], now=0.0).allowed
    # Eighths of a second are exact in binary floating point: no rounding decides.
    for n in range(1, 480):
        assert buckets.take([each], now=n / 8).allowed
    assert not buckets.take([each], now=479 / 8).allowed


def test_buckets_are_separate() -> None:
    buckets = table()
    first, second = limit("client:a", 1, 2), limit("client:b", 1, 2)
    assert buckets.take([first], 0.0).allowed and buckets.take([first], 0.0).allowed
    assert not buckets.take([first], 0.0).allowed
    assert buckets.take([second], 0.0).allowed


def test_a_request_takes_from_all_its_buckets_or_none() -> None:
    buckets = table()
    client, key = limit("client:a", 1, 5), limit("key:k", 1, 2)
    assert buckets.take([client, key], 0.0).allowed
    assert buckets.take([client, key], 0.0).allowed
    refused = buckets.take([client, key], 0.0)  # the key's bucket binds
    assert not refused.allowed and refused.limit == 2
    # The refused request took nothing from the client's bucket: 3 tokens are left.
    assert [buckets.take([client], 0.0).allowed for _ in range(4)] == [True] * 3 + [False]


def test_give_back_returns_a_token_up_to_the_burst() -> None:
    buckets, each = table(), limit(rate=1, burst=2)
    buckets.take([each], 0.0)
    buckets.take([each], 0.0)
    buckets.give_back(each, 0.0)
    assert buckets.take([each], 0.0).allowed
    assert not buckets.take([each], 0.0).allowed
    for _ in range(5):
        buckets.give_back(each, 0.0)
    assert [buckets.take([each], 0.0).allowed for _ in range(3)] == [True, True, False]


def test_memory_is_bounded_and_full_buckets_make_room() -> None:
    buckets = table(slots=4)  # 4 + 8 probe slots: 12 at most
    names = [f"addr:10.0.0.{n}" for n in range(40)]
    for name in names:
        assert buckets.take([limit(name, 1, 1)], now=0.0).allowed
    # Every bucket is empty at t=0 and a table of 12 slots holds 40 names: the evicted
    # ones start again full (the price of the bound) ...
    allowed = [buckets.take([limit(name, 1, 1)], now=0.0).allowed for name in names]
    assert any(allowed) and not all(allowed)
    # ... and once they refilled, their slots are reused rather than evicting anyone.
    assert all(buckets.take([limit(name, 1, 1)], now=5.0).allowed for name in names[:12])


def test_a_slot_from_another_boot_or_torn_starts_full() -> None:
    buckets, each = table(), limit(rate=1, burst=3)
    for _ in range(3):
        buckets.take([each], now=1_000_000.0)
    # The clock is now far behind what the slot says (a file from before a reboot).
    assert [buckets.take([each], now=5.0).allowed for _ in range(4)] == [True] * 3 + [False]


def test_attach_refuses_what_is_not_a_table() -> None:
    with pytest.raises(LimitTableError):
        BucketTable(bytearray(BucketTable.size_for(8))).attach()


def grant(rate: int = 2, burst: int = 4, key_rate: int | None = None) -> KeyGrant:
    return KeyGrant(
        key_id=uuid.uuid4(),
        client_id=uuid.uuid4(),
        client_name="c",
        roles=frozenset({Role.POS}),
        expires_at_s=None,
        client_rate_per_second=rate,
        client_burst=burst,
        key_rate_per_second=key_rate,
    )


def limiter(path: Path) -> RateLimiter:
    return RateLimiter(SharedBuckets(path, 256), auth_failures_per_second=1, auth_failures_burst=3)


def test_two_mappings_of_the_file_share_every_bucket(tmp_path: Path) -> None:
    first, second = limiter(tmp_path / "b"), limiter(tmp_path / "b")
    caller = grant(rate=1, burst=4)
    for one in (first, second, first, second):
        one.take_request(caller)
    with pytest.raises(RateLimited) as caught:
        second.take_request(caller)
    assert caught.value.code == "RATE_LIMITED" and caught.value.headers is not None
    assert caught.value.headers["Retry-After"] == "1"
    assert caught.value.headers["RateLimit-Limit"] == "4"


def test_failed_authentications_per_address(tmp_path: Path) -> None:
    first, second = limiter(tmp_path / "b"), limiter(tmp_path / "b")
    for one in (first, second, first):
        one.take_key_lookup("10.1.1.1")
    with pytest.raises(RateLimited) as caught:
        second.take_key_lookup("10.1.1.1")
    assert caught.value.code == "AUTH_RATE_LIMITED"
    second.take_key_lookup("10.1.1.2")  # another address
    first.give_back_key_lookup("10.1.1.1")  # a lookup that found a valid key
    second.take_key_lookup("10.1.1.1")


def _take_many(path: str, client_id: str, count: int, out: multiprocessing.Queue) -> None:
    one = limiter(Path(path))
    caller = KeyGrant(uuid.uuid4(), uuid.UUID(client_id), "c", frozenset({Role.POS}), None, 1, 500)
    allowed = 0
    for _ in range(count):
        try:
            one.take_request(caller)
            allowed += 1
        except RateLimited:
            pass
    out.put(allowed)


def test_processes_racing_never_exceed_the_bucket(tmp_path: Path) -> None:
    """Four processes take 300 each from one bucket of 500 (refilling 1 a second): the
    file lock makes the updates atomic, so no token is handed out twice."""
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = context.Queue()
    client = str(uuid.uuid4())
    path = str(tmp_path / "b")
    limiter(Path(path))  # formatted once, before the race
    started = time.monotonic()
    workers = [context.Process(target=_take_many, args=(path, client, 300, out)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    allowed = sum(out.get(timeout=5) for _ in workers)
    elapsed = time.monotonic() - started
    # 500 in the bucket plus at most one a second of refill while they ran.
    assert 500 <= allowed <= 500 + math.ceil(elapsed) + 1

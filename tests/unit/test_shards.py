"""domain.shards: stable buckets, contiguous bucket ranges per shard, clearing account ids."""

from __future__ import annotations

import uuid

import pytest

from domain.shards import (
    BUCKETS,
    ShardConfigError,
    ShardMap,
    bucket_of,
    clearing_wallet_id,
    split_database_urls,
)


def test_bucket_is_stable_across_processes_and_releases() -> None:
    # Pinned values: a change of the hash would move users between shards.
    assert bucket_of(uuid.UUID("00000000-0000-0000-0000-000000000000")) == 0x37 % 16
    assert bucket_of(uuid.UUID("11111111-1111-4111-8111-111111111111")) == bucket_of(
        uuid.UUID("11111111-1111-4111-8111-111111111111")
    )


def test_buckets_spread_over_all_sixteen() -> None:
    seen = {bucket_of(uuid.UUID(int=n * 7919 + 1)) for n in range(2000)}
    assert seen == set(range(BUCKETS))


def test_one_shard_owns_everything() -> None:
    shards = ShardMap(1)
    assert not shards.sharded
    assert {shards.shard_of_bucket(b) for b in range(BUCKETS)} == {0}


def test_the_seed_layout_with_four_shards() -> None:
    shards = ShardMap(4)
    assert [shards.buckets_of(s) for s in range(4)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9, 10, 11],
        [12, 13, 14, 15],
    ]


@pytest.mark.parametrize("count", [2, 3, 5, 16])
def test_every_bucket_has_exactly_one_shard(count: int) -> None:
    shards = ShardMap(count)
    owned = [b for s in range(count) for b in shards.buckets_of(s)]
    assert sorted(owned) == list(range(BUCKETS))
    assert all(shards.buckets_of(s) for s in range(count))  # no shard without buckets


def test_two_shards_split_users_by_bucket() -> None:
    shards = ShardMap(2)
    users = [uuid.UUID(int=n * 104729 + 3) for n in range(400)]
    by_shard = {u: shards.shard_of_user(u) for u in users}
    assert set(by_shard.values()) == {0, 1}
    assert all(by_shard[u] == (0 if bucket_of(u) < 8 else 1) for u in users)


@pytest.mark.parametrize("count", [0, 17, -1])
def test_shard_count_out_of_range_is_refused(count: int) -> None:
    with pytest.raises(ShardConfigError):
        ShardMap(count)


def test_unknown_shard_and_bucket_are_refused() -> None:
    with pytest.raises(ShardConfigError):
        ShardMap(2).peers(2)
    with pytest.raises(ShardConfigError):
        ShardMap(2).shard_of_bucket(16)


def test_clearing_accounts_differ_per_direction_and_currency() -> None:
    ids = {
        clearing_wallet_id(0, 1, "USD"),
        clearing_wallet_id(1, 0, "USD"),
        clearing_wallet_id(0, 1, "EUR"),
        clearing_wallet_id(0, 2, "USD"),
    }
    assert len(ids) == 4
    assert clearing_wallet_id(0, 1, "USD") == clearing_wallet_id(0, 1, "USD")
    with pytest.raises(ShardConfigError):
        clearing_wallet_id(1, 1, "USD")


def test_database_urls_are_split_and_checked() -> None:
    assert split_database_urls(" a , b,") == ["a", "b"]
    assert split_database_urls("") == []
    with pytest.raises(ShardConfigError):
        split_database_urls("a,a")

"""Ledger shards (the seed's plan): 16 buckets of user_id over N PostgreSQL databases.

A user's bucket is a stable hash of the user id mod 16, the same in every process and every
release (never Python's ``hash``). Buckets go to shards in contiguous ranges, as in the
seed (4 shards: buckets 0-3, 4-7, 8-11, 12-15), so growing N splits ranges instead of
moving every user. Every wallet of a user lives on the user's shard; system accounts exist
on every shard. A transfer between shards moves through a clearing account per pair of
shards: the source shard credits its account for the destination shard, the destination
shard debits its account for the source shard; together they hold what is in flight.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass

from domain.exceptions import DomainError
from domain.ids import with_text

BUCKETS = 16

#: The clearing accounts' system user is the one of every other system account.
_CLEARING_NAMESPACE = uuid.UUID("3b0d7f8e-52a4-4f0e-8c39-6d1e0f2a9b44")


class ShardConfigError(DomainError):
    """The shard settings do not fit (count out of range, index unknown). Operator: fix
    LEDGER_DATABASE_URLS / LEDGER_SHARD (or WALLETPIPE_LEDGER_SHARDS) and restart."""

    code = "SHARD_CONFIG"


def bucket_of(user_id: uuid.UUID) -> int:
    """The user's bucket, 0..15: the first byte of sha256 of the id's 16 bytes, mod 16."""
    return hashlib.sha256(user_id.bytes).digest()[0] % BUCKETS


@dataclass(frozen=True)
class ShardMap:
    """Which shard owns which bucket: ``count`` shards take contiguous bucket ranges."""

    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= BUCKETS:
            raise ShardConfigError(f"shard count must be 1..{BUCKETS}, not {self.count}")

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def shard_of_bucket(self, bucket: int) -> int:
        if not 0 <= bucket < BUCKETS:
            raise ShardConfigError(f"bucket must be 0..{BUCKETS - 1}, not {bucket}")
        return bucket * self.count // BUCKETS

    def shard_of_user(self, user_id: uuid.UUID) -> int:
        return self.shard_of_bucket(bucket_of(user_id))

    def buckets_of(self, shard: int) -> list[int]:
        self.check_shard(shard)
        return [b for b in range(BUCKETS) if self.shard_of_bucket(b) == shard]

    def check_shard(self, shard: int) -> int:
        if not 0 <= shard < self.count:
            raise ShardConfigError(f"shard must be 0..{self.count - 1}, not {shard}")
        return shard

    def peers(self, shard: int) -> list[int]:
        self.check_shard(shard)
        return [s for s in range(self.count) if s != shard]


def clearing_account_name(peer: int) -> str:
    """The ``system_balances.account`` of a shard's clearing account for ``peer``."""
    return f"SHARD_CLEARING_{peer}"


@functools.cache  # a handful of (shard, peer, currency) triples, on the ledger's hot path
def clearing_wallet_id(shard: int, peer: int, currency_code: str) -> uuid.UUID:
    """The clearing account that ``shard`` keeps for money moving to or from ``peer``.
    Derived (uuid5), so both sides and verify name it without a lookup."""
    if shard == peer:
        raise ShardConfigError(f"shard {shard} keeps no clearing account for itself")
    return with_text(uuid.uuid5(_CLEARING_NAMESPACE, f"{shard}->{peer}:{currency_code}"))


def split_database_urls(text: str) -> list[str]:
    """``LEDGER_DATABASE_URLS``: comma-separated, one URL per shard, shard 0 first."""
    urls = [part.strip() for part in text.split(",") if part.strip()]
    if len(urls) > BUCKETS:
        raise ShardConfigError(f"at most {BUCKETS} shard databases, got {len(urls)}")
    if len(set(urls)) != len(urls):
        raise ShardConfigError("two shards name the same database")
    return urls

"""Tamper evidence: a hash chain over the ledger's postings (one chain per shard).

Every entry gets the next ``chain_seq``, the previous entry's hash as ``prev_hash`` and
``entry_hash = sha256(prev_hash || canonical(entry))``. Changing any entry's amount, wallet,
type, balance or time, or deleting or inserting an entry, breaks every later link, which
``walletpipe ledger verify`` recomputes. Pure: the store links a batch's entries inside the
batch's transaction, after locking the chain head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.money import wire
from ledger_writer.rows import Row

#: prev_hash of the first entry of a chain.
GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_sha256 = hashlib.sha256


def micros_since_epoch(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def canonical(seq: int, entry: Row, micros: int | None = None) -> bytes:
    """One entry as hashed: the same text the migration's backfill builds in SQL.
    ``micros`` is the entry's time in microseconds since the epoch, when the caller has it."""
    entry_id, transaction_id, wallet_id, entry_type, amount, balance_after, created_at = entry[:7]
    if micros is None:
        micros = micros_since_epoch(created_at)
    return (
        f"{seq}|{entry_id}|{transaction_id}|{wallet_id}|{entry_type}|"
        f"{wire(Decimal(amount))}|{wire(Decimal(balance_after))}|{micros}"
    ).encode()


def entry_hash(prev_hash: bytes, seq: int, entry: Row, micros: int | None = None) -> bytes:
    return _sha256(prev_hash + canonical(seq, entry, micros)).digest()


def link(head_seq: int, head_hash: bytes, entries: Iterable[Row]) -> Iterator[Row]:
    """The entries with ``(chain_seq, prev_hash, entry_hash)`` appended, after the head."""
    seq, prev = head_seq, head_hash
    # A batch's entries share one time: convert it once.
    last_at: datetime | None = None
    last_micros = 0
    for entry in entries:
        seq += 1
        at = entry[6]
        if at is not last_at:
            last_at, last_micros = at, micros_since_epoch(at)
        digest = entry_hash(prev, seq, entry, last_micros)
        yield (*entry, seq, prev, digest)
        prev = digest

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

#: prev_hash of the first entry of a chain.
GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def canonical(seq: int, entry: tuple) -> bytes:
    """One entry as hashed: the same text the migration's backfill builds in SQL."""
    entry_id, transaction_id, wallet_id, entry_type, amount, balance_after, created_at = entry[:7]
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return (
        f"{seq}|{entry_id}|{transaction_id}|{wallet_id}|{entry_type}|"
        f"{wire(Decimal(amount))}|{wire(Decimal(balance_after))}|{micros}"
    ).encode()


def entry_hash(prev_hash: bytes, seq: int, entry: tuple) -> bytes:
    return hashlib.sha256(prev_hash + canonical(seq, entry)).digest()


def link(head_seq: int, head_hash: bytes, entries: Iterable[tuple]) -> Iterator[tuple]:
    """The entries with ``(chain_seq, prev_hash, entry_hash)`` appended, after the head."""
    seq, prev = head_seq, head_hash
    for entry in entries:
        seq += 1
        digest = entry_hash(prev, seq, entry)
        yield (*entry, seq, prev, digest)
        prev = digest

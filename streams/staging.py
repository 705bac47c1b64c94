"""Batch the worker's table traffic: read each wallet once, write each wallet once, per batch.

The agents take records in batches (``Stream.take_events``). A faust table write is a
RocksDB put plus a changelog record; a wallet with several requests in one batch, each
touching its balance, counters, history and recent decisions, would pay that several times
per request. ``StagedWallets`` keeps the batch's view of the wallets in memory (the same
JSON values the table holds, so the handlers see exactly what they would have seen record
by record) and writes each changed wallet once at the end of the batch, before the outputs
are sent and before the batch is acknowledged. A crash before then loses nothing: the
batch is redelivered and decided again from the unchanged tables.

faust finds the partition of a table key through its "current event" context variable,
which its stream sets per record. When a batch is handled, no record is current, so
``bind`` sets it, in the agent's own task, before each record is handled and before each
key is written (the key's last record: every key lives in the partition of the records
keyed by it).
"""

from __future__ import annotations

import weakref
from typing import Any

from faust.streams import _current_event, current_event

from streams.exceptions import StreamInvariantError


def bind(event: Any) -> None:
    """Make ``event`` the current record of this task, as faust's stream does per record
    (``Stream._set_current_event`` would also change the stream's own attribute, which its
    take buffer reads from another task)."""
    _current_event.set(weakref.ref(event))


class StagedWallets:
    """Every per-wallet table of the worker as one faust table whose value holds each of
    them under its name (a facet), seen through one batch.

    One value per wallet means one RocksDB read and at most one write and one changelog
    record per wallet and batch, however many of the wallet's tables a batch changes.
    ``facet(name)`` gives the handlers a table-like view (``get``, ``[key] = value``);
    ``flush`` writes the changed wallets, each under the record that changed it last."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._values: dict[bytes, dict[str, Any]] = {}
        self._changed: dict[bytes, Any] = {}  # key -> the record that changed it last

    def facet(self, name: str) -> Facet:
        return Facet(self, name)

    def value(self, key: bytes) -> dict[str, Any]:
        try:
            return self._values[key]
        except KeyError:
            # A copy: the memory store hands out the stored object itself.
            value = self._values[key] = dict(self._table.get(key) or {})
            return value

    def changed(self, key: bytes) -> None:
        event = current_event()
        if event is None:
            raise StreamInvariantError("a table write outside of a record's handling")
        self._changed[key] = event

    def flush(self) -> int:
        """Write the changed wallets to the table; forget the batch. How many written."""
        written = len(self._changed)
        for key, event in self._changed.items():
            bind(event)
            self._table[key] = self._values[key]
        self._values.clear()
        self._changed.clear()
        return written


class Facet:
    """One of a wallet's tables inside ``StagedWallets``: ``get`` and ``[key] = value``
    like a faust table (``None`` for a wallet that has none yet)."""

    def __init__(self, wallets: StagedWallets, name: str) -> None:
        self._wallets = wallets
        self.name = name

    def get(self, key: bytes) -> Any:
        return self._wallets.value(key).get(self.name)

    def __setitem__(self, key: bytes, value: Any) -> None:
        self._wallets.value(key)[self.name] = value
        self._wallets.changed(key)

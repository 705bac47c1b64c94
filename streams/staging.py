"""Stage the worker's table traffic: read each wallet once, write it once, per record.

A wallet's state is one value of one faust table (``StagedWallets``), with each kind of
state under a name (a facet: balance, limits, counters, history, reviews, decisions). A
faust table write is a RocksDB put plus a changelog record; as separate tables, one request
cost up to seven of each. Staged, the handlers read and write facets in memory (the same
JSON values the table holds, so they see exactly what they would have seen in the table),
and ``flush`` writes each changed wallet once, before the record's outputs are sent and
before it is acknowledged; ``discard`` drops the changes of a record that failed. A crash
before the write loses nothing: the record is redelivered and decided again.

faust finds the partition of a table key through its "current event" context variable,
which its stream sets per record. ``flush`` sets it (``bind``) to the record that last
changed each wallet, so a caller that writes outside faust's own iteration (a batch, a
test) places every wallet in the partition of the records keyed by it.
"""

from __future__ import annotations

import weakref
from typing import Any

from faust.streams import _current_event, current_event

from streams.exceptions import StreamInvariantError


def bind(event: Any) -> None:
    """Make ``event`` the current record of this task, as faust's stream does per record
    (``Stream._set_current_event`` would also change the stream's own attribute, which a
    ``take`` buffer reads from another task)."""
    _current_event.set(weakref.ref(event))


class StagedWallets:
    """Every per-wallet table of the worker as one faust table whose value holds each of
    them under its name (a facet), seen through one unit of work (a record).

    One value per wallet means one RocksDB read and at most one write and one changelog
    record per wallet and unit of work, however many of the wallet's facets it changes.
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
        """Write the changed wallets to the table; forget the unit. How many written."""
        written = len(self._changed)
        for key, event in self._changed.items():
            bind(event)
            self._table[key] = self._values[key]
        self._values.clear()
        self._changed.clear()
        return written

    def discard(self) -> None:
        """Forget the unit's changes without writing them (its record failed)."""
        self._values.clear()
        self._changed.clear()


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

"""StagedWallets: a batch reads each wallet once, writes each changed wallet once, under the
record that changed it last, and never hands out the stored value itself."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from streams.exceptions import StreamInvariantError
from streams.staging import StagedWallets, bind


class CountingTable(dict):
    """A dict that counts reads and records each write with the record current then."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.writes: list[tuple[bytes, dict, object]] = []

    def get(self, key, default=None):  # type: ignore[no-untyped-def, override]
        self.reads += 1
        return super().get(key, default)

    def __setitem__(self, key, value) -> None:  # type: ignore[no-untyped-def]
        from faust.streams import current_event

        self.writes.append((key, dict(value), current_event()))
        super().__setitem__(key, value)


class Record:
    """What faust's tables need of an event: a message with a partition (weakly referenced)."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def record(partition: int) -> Record:
    return Record(partition)


def test_a_batch_reads_once_and_writes_each_changed_wallet_once() -> None:
    table = CountingTable()
    wallets = StagedWallets(table)
    state, usage = wallets.facet("state"), wallets.facet("usage")
    first, second, other = record(3), record(3), record(5)
    bind(first)
    assert state.get(b"a") is None
    state[b"a"] = {"available": "1"}
    bind(second)
    usage[b"a"] = {"n": 1}
    state[b"a"] = {"available": "2"}
    bind(other)
    assert state.get(b"b") is None  # read, never changed: not written
    assert table.reads == 2
    assert wallets.flush() == 1
    assert table.writes == [(b"a", {"state": {"available": "2"}, "usage": {"n": 1}}, second)]
    bind(other)
    assert state.get(b"a") == {"available": "2"} and table.reads == 3  # a new batch reads again
    assert wallets.flush() == 0


def test_the_stored_value_is_never_changed_in_place() -> None:
    table = CountingTable()
    dict.__setitem__(table, b"a", {"state": {"available": "1"}})
    stored = table[b"a"]
    wallets = StagedWallets(table)
    current = record(0)  # held: faust keeps only a weak reference to the current record
    bind(current)
    wallets.facet("usage")[b"a"] = {"n": 1}
    assert stored == {"state": {"available": "1"}}  # the memory store's own object
    wallets.flush()
    assert table[b"a"] == {"state": {"available": "1"}, "usage": {"n": 1}}


def test_a_write_with_no_current_record_is_refused() -> None:
    from faust.streams import _current_event

    _current_event.set(None)
    wallets = StagedWallets(CountingTable())
    with pytest.raises(StreamInvariantError):
        wallets.facet("state")[b"a"] = {}

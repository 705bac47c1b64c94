"""The stream's state layout: every key of a wallet partition's store, and its codec.

One RocksDB store per wallet partition (quix-streams; changelog topic
``changelog__<group>--wallet.commands--default``), read and written through its Kafka
transaction, so a record's state changes commit with its outputs and its offset. Keys live
under a prefix; a wallet's under its id (the record key), the partition's own under
``PARTITION``:

==================  ===========================================================  ==========
key (prefix)        value                                                        size
==================  ===========================================================  ==========
``w`` (wallet)      ``WalletValue``: balance, open holds and reviews, limit set,  ~0.2-2 KB
                    limit counters
``d`` (wallet)      the user's devices (``Devices``): id → active or revoked     ~40 B/device
``p`` (wallet)      the user's payment methods (``PaymentMethods``)              ~60 B/method
``c`` (wallet)      the fraud features' customer state                           16 B/event
                    (``models.features.CustomerState``, JSON)                    in 30 days
``t:<id>`` (wallet) ``streams.decided.Decided``: one per transaction, until its   ~0.4 KB
                    outcome and then ``STREAMS_DECIDED_RETENTION_S``
``k:<id>`` (wallet) a credit applied (the credited side of a transfer), as long   ~10 B
``b:<n>`` (part.)   bucket ``n`` of the partition's clock: the deadlines and      75 B/entry
                    retention ends falling in it (``Schedule``)
``clock`` (part.)   the next bucket the clock will read                          ~10 B
``terminals``       terminal counts not yet sent (``TerminalPending``)           ~60 B/entry
(part.)
==================  ===========================================================  ==========

A request reads and writes ``w``, ``c`` and its own ``t:<id>``: the same few keys whatever
the wallet's age. quix-streams keeps a checkpoint's writes in memory and sends each changed
key once per checkpoint to the changelog, so a busy wallet costs one changelog record per
key and commit, not per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from domain.money import from_wire, wire
from streams.limits import LimitSet, LimitUsage
from streams.wallet_state import WalletState

WALLET = b"w"
CUSTOMER = b"c"
DEVICES = b"d"
PAYMENT_METHODS = b"p"
#: The prefix of the partition's own keys: no wallet id (the record keys) starts with it.
PARTITION = b"\x00partition"
CLOCK = b"clock"
TERMINALS_PENDING = b"terminals"
#: Width of a clock bucket: a deadline is acted on within one tick after its bucket ends.
BUCKET_MS = 200


def decided_key(transaction_id: str) -> bytes:
    return b"t:" + transaction_id.encode()


def credited_key(transaction_id: str) -> bytes:
    return b"k:" + transaction_id.encode()


class Store(Protocol):
    """A wallet partition's state, as quix-streams' ``PartitionTransaction`` offers it (and
    ``tests``' in-memory stand-in)."""

    def get_bytes(self, key: bytes, prefix: bytes) -> bytes | None: ...

    def set_bytes(self, key: bytes, value: bytes, prefix: bytes) -> None: ...

    def delete(self, key: bytes, prefix: bytes) -> None: ...


@dataclass
class WalletValue:
    """Everything a wallet's partition keeps of the wallet itself: constant in size (its
    limits are bounded by the API, its counters by ``limits.COUNTERS_MAX``)."""

    state: WalletState = field(default_factory=WalletState)
    limits: LimitSet = field(default_factory=LimitSet)
    usage: LimitUsage = field(default_factory=LimitUsage)
    reviews_open: int = 0
    #: The wallet's status and the version it came with (``WalletStatusChanged``); -1:
    #: none came, the wallet is as created (ACTIVE).
    status: str = "ACTIVE"
    status_version: int = -1
    #: The user's KYC status from the last ``KycStatusChanged`` (None: none came; the
    #: request's own ``kyc_status`` applies), and its version.
    kyc_status: str | None = None
    kyc_version: int = -1

    @property
    def frozen(self) -> bool:
        return self.status != "ACTIVE"

    def encode(self) -> bytes:
        state = self.state
        fields = [
            wire(state.available),
            wire(state.reserved),
            state.holds_open,
            self.reviews_open,
            self.limits.to_json() if self.limits.version >= 0 else None,
            self.usage.to_json() or None,
        ]
        if self.status_version >= 0 or self.kyc_version >= 0:  # older values have six
            fields.append([self.status, self.status_version, self.kyc_status, self.kyc_version])
        return orjson.dumps(fields)

    @classmethod
    def decode(cls, data: bytes | None) -> WalletValue:
        if data is None:
            return cls()
        available, reserved, holds_open, reviews_open, limits, usage, *profile = orjson.loads(data)
        value = cls(
            WalletState(from_wire(available), from_wire(reserved), holds_open),
            LimitSet.from_json(limits),
            LimitUsage.from_json(usage),
            reviews_open,
        )
        if profile:
            value.status, value.status_version, value.kyc_status, value.kyc_version = profile[0]
        return value


DEVICE_ACTIVE, DEVICE_REVOKED = "ACTIVE", "REVOKED"


@dataclass
class Devices:
    """The devices of a wallet's user as last published (``WalletDevicesChanged``), under
    ``d``: read only by a request that names a ``metadata.device_id``."""

    version: int = -1
    devices: dict[str, str] = field(default_factory=dict)

    def status_of(self, device_id: object) -> str:
        """``device_status`` of the fraud policy: NONE (the request names no device),
        KNOWN, REVOKED or UNKNOWN (not one of the user's devices). A wallet whose
        partition has no device set yet (its user registered none since it was made) cannot
        tell: NONE."""
        if device_id is None or device_id == "" or self.version < 0:
            return "NONE"
        found = self.devices.get(str(device_id).lower())
        if found is None:
            return "UNKNOWN"
        return "KNOWN" if found == DEVICE_ACTIVE else "REVOKED"

    def encode(self) -> bytes:
        return orjson.dumps([self.version, self.devices])

    @classmethod
    def decode(cls, data: bytes | None) -> Devices:
        if data is None:
            return cls()
        version, devices = orjson.loads(data)
        return cls(version, devices)


#: A clock entry: what to do, the wallet, the transaction (ids as text: fixed width).
EXPIRE, FORGET, FORGET_CREDIT = b"e", b"f", b"k"
_ID_CHARS = 36
_ENTRY = 1 + 2 * _ID_CHARS


class Schedule:
    """The partition's clock: what is due when, in buckets of ``BUCKET_MS`` under the
    partition's prefix, each the concatenation of fixed-width entries (appending one is a
    copy of the bucket, a few KB at most). ``ClockTicked`` walks the buckets that ended."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(
        self, now_ms: int, due_ms: int, action: bytes, wallet: str, transaction_id: str
    ) -> None:
        entry = action + wallet.encode() + transaction_id.encode()
        if len(entry) != _ENTRY:
            raise ValueError(f"clock entry for {wallet!r} {transaction_id!r} is not two ids")
        store = self.store
        if store.get_bytes(CLOCK, PARTITION) is None:  # the partition's first entry
            store.set_bytes(CLOCK, b"%d" % (now_ms // BUCKET_MS), PARTITION)
        key = b"b:%d" % (max(due_ms, now_ms) // BUCKET_MS)
        store.set_bytes(key, (store.get_bytes(key, PARTITION) or b"") + entry, PARTITION)

    def due(self, now_ms: int, buckets_max: int) -> Iterator[tuple[bytes, str, str]]:
        """Take the entries of every bucket that ended by ``now_ms``, oldest first, at most
        ``buckets_max`` buckets (the rest at the next tick): from the bucket where the last
        tick stopped, or the partition's first entry's."""
        store = self.store
        stored = store.get_bytes(CLOCK, PARTITION)
        if stored is None:
            return  # nothing was ever scheduled here
        start = int(stored)
        end = min(now_ms // BUCKET_MS, start + buckets_max)  # the current bucket is open
        for index in range(start, end):
            key = b"b:%d" % index
            bucket = store.get_bytes(key, PARTITION)
            if bucket is None:
                continue
            store.delete(key, PARTITION)
            for at in range(0, len(bucket), _ENTRY):
                entry = bucket[at : at + _ENTRY]
                yield entry[:1], entry[1:37].decode(), entry[37:].decode()
        if end > start:
            store.set_bytes(CLOCK, b"%d" % end, PARTITION)


class TerminalPending:
    """Terminal counts of a partition not sent yet: appended per request, sent in batches
    (``streams.terminals``) by the partition's records, so no request costs a record of
    its own. Lines of ``"terminal" \\t time_s \\t fraud`` (the terminal as a JSON string:
    no raw line break in it)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, terminal: str, time_s: int, fraud: bool) -> None:
        line = b"%s\t%d\t%d\n" % (orjson.dumps(terminal), time_s, fraud)
        pending = self.store.get_bytes(TERMINALS_PENDING, PARTITION) or b""
        self.store.set_bytes(TERMINALS_PENDING, pending + line, PARTITION)

    def take(self) -> list[tuple[str, int, bool]]:
        pending = self.store.get_bytes(TERMINALS_PENDING, PARTITION)
        if not pending:
            return []
        self.store.delete(TERMINALS_PENDING, PARTITION)
        taken = []
        for line in pending.split(b"\n")[:-1]:
            terminal, time_s, fraud = line.rsplit(b"\t", 2)
            taken.append((orjson.loads(terminal), int(time_s), fraud == b"1"))
        return taken


#: The method kind a transaction type must name: a deposit comes from a card, a
#: withdrawal goes to a bank account.
METHOD_KIND_OF = {"DEPOSIT": "CARD", "WITHDRAWAL": "BANK_ACCOUNT"}


@dataclass
class PaymentMethods:
    """The payment methods of a wallet's user as last published
    (``WalletPaymentMethodsChanged``), under ``p``: id → [kind, usable, shared users]."""

    version: int = -1
    methods: dict[str, list] = field(default_factory=dict)

    def problem(self, transaction_type: str, method_id: object) -> str | None:
        """Why the request may not use ``method_id`` (None: it may, or it names none). A
        wallet with no set yet (made after its user's last change) cannot tell: allowed."""
        kind = METHOD_KIND_OF.get(transaction_type)
        if method_id is None or method_id == "" or self.version < 0 or kind is None:
            return None
        found = self.methods.get(str(method_id).lower())
        if found is None:
            return f"payment method {method_id} is not one of the user's"
        if found[0] != kind:
            return f"a {transaction_type} uses a {kind}, and {method_id} is not one"
        if not found[1]:
            return f"payment method {method_id} is not verified or was removed"
        return None

    def shared_users(self, method_id: object) -> int:
        found = self.methods.get(str(method_id).lower()) if method_id else None
        return int(found[2]) if found else 0

    def encode(self) -> bytes:
        return orjson.dumps([self.version, self.methods])

    @classmethod
    def decode(cls, data: bytes | None) -> PaymentMethods:
        if data is None:
            return cls()
        version, methods = orjson.loads(data)
        return cls(version, methods)

"""One transaction as its wallet's partition knows it: a state key of its own per decision.

Pure. The stream keeps, under the key ``t:<transaction id>`` of the wallet the request was
keyed by, what it decided and what is still open: the status, the amount held, the limit
charge, the deadline of an open hold, the features the transaction was scored with (for
its fraud label, days later) and where and when it was counted at a terminal. So:

* a replayed request (a retried publish) is recognised by its exact id, for as long as the
  key is kept (``STREAMS_DECIDED_RETENTION_S`` after the outcome), not by a window of recent
  ids a replay could slip past; within a worker's own processing, Kafka transactions
  (exactly once) already exclude a second handling;
* a ledger outcome settles or releases exactly the hold it names, and an outcome that does
  not fit the status (a posting for a transaction the stream declined, held for review, or
  released at its deadline) is a ``WalletInvariantError``: the worker stops;
* the wallet's own value stays the same size whatever its history.

Status: ``REJECTED`` (declined, nothing held), ``REVIEW`` (held for an analyst),
``SENT`` (a ``PostTransaction`` is with the ledger), ``SETTLED`` (posted), ``FAILED``
(the ledger failed it or discarded it as a repeat; hold released), ``EXPIRED`` (released by
the stream at its deadline: the ledger will only ever fail it).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from domain.money import ZERO, from_wire, wire
from models.protocol import Features
from streams.limits import Charge


class Status(StrEnum):
    REJECTED = "REJECTED"
    REVIEW = "REVIEW"
    SENT = "SENT"
    SETTLED = "SETTLED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


#: Statuses with a reservation (or, for a deposit, a limit charge) still open.
OPEN = frozenset({Status.REVIEW, Status.SENT})


@functools.lru_cache(maxsize=8)
def _signature(names: tuple[str, ...]) -> int:
    """A short fingerprint of the feature names, kept instead of the names themselves."""
    return zlib.crc32("\x1f".join(names).encode())


@dataclass
class Decided:
    status: Status
    #: Reserved for it (``total_amount``; zero for a deposit or a rejection).
    held: Decimal = ZERO
    charge: Charge | None = None
    #: Epoch milliseconds by which its open hold must be closed (0: none).
    deadline_ms: int = 0
    #: The features it was scored with and the fingerprint of their names (for its label).
    features: list[float] | None = None
    names: int = 0
    #: Where and when it was counted at a terminal (None: it was not).
    terminal: str | None = None
    time_s: int | None = None
    labelled: bool = False
    #: While held for review: what the approval needs (the request's JSON, its risk score,
    #: the model that scored it and the challengers' scores).
    review: dict[str, Any] | None = field(default=None)

    def remember_features(self, features: Features) -> None:
        self.features = list(features.values())  # exact: what the model saw
        self.names = _signature(tuple(features))

    def features_for(self, names: tuple[str, ...]) -> Features | None:
        """The features it was scored with, if they are of these names (same engine)."""
        if self.features is None or self.names != _signature(names):
            return None
        return dict(zip(names, self.features, strict=True))

    def encode(self) -> bytes:
        return orjson.dumps(
            [
                self.status.value,
                wire(self.held),
                None if self.charge is None else self.charge.to_json(),
                self.deadline_ms,
                self.features,
                self.names,
                self.terminal,
                self.time_s,
                self.labelled,
                self.review,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Decided:
        status, held, charge, deadline, features, names, terminal, time_s, labelled, review = (
            orjson.loads(data)
        )
        return cls(
            Status(status),
            from_wire(held),
            Charge.from_json(charge),
            deadline,
            features,
            names,
            terminal,
            time_s,
            labelled,
            review,
        )

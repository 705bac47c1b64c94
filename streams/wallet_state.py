"""A wallet's state in the stream: what it may spend now, what is held, what was applied.

Pure and serialisable to JSON (a faust table value). Holds are keyed by transaction id, so a
replayed request, release or credit is recognised and applied once. The stream's
``available`` counts only credits the ledger has posted, minus every open hold: a
reservation can never make it negative.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from domain.exceptions import LedgerInvariantError
from domain.money import ZERO, from_wire, wire

#: How many recent credit ids a wallet remembers to recognise a replayed credit.
RECENT_CREDITS_MAX = 256


@dataclass
class WalletState:
    available: Decimal = ZERO
    reserved: Decimal = ZERO
    holds: dict[str, Decimal] = field(default_factory=dict)
    recent_credits: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_CREDITS_MAX))

    def can_reserve(self, amount: Decimal) -> bool:
        return self.available >= amount

    def reserve(self, transaction_id: str, amount: Decimal) -> None:
        if transaction_id in self.holds:
            raise LedgerInvariantError(f"hold {transaction_id} exists already")
        if amount <= 0 or self.available < amount:
            raise LedgerInvariantError(f"cannot hold {amount} of available {self.available}")
        self.available -= amount
        self.reserved += amount
        self.holds[transaction_id] = amount

    def settle(self, transaction_id: str, spent: Decimal | None = None) -> bool:
        """The ledger posted the debit: the hold leaves ``reserved``; of it, ``spent`` (all
        when None) is gone for good and the rest (a partial capture) returns to available."""
        amount = self.holds.get(transaction_id)
        if amount is None:
            return False
        spent = amount if spent is None else spent
        if spent < 0 or spent > amount:
            raise LedgerInvariantError(f"settle {spent} of hold {amount} ({transaction_id})")
        del self.holds[transaction_id]
        self.reserved -= amount
        self.available += amount - spent
        self._check()
        return True

    def release(self, transaction_id: str) -> bool:
        """The debit will not happen (failed, duplicate): the hold returns to ``available``."""
        amount = self.holds.pop(transaction_id, None)
        if amount is None:
            return False
        self.reserved -= amount
        self.available += amount
        self._check()
        return True

    def credit(self, transaction_id: str, amount: Decimal) -> bool:
        if amount <= 0:
            raise LedgerInvariantError(f"a credit must be positive, got {amount}")
        if transaction_id in self.recent_credits:
            return False
        self.available += amount
        self.recent_credits.append(transaction_id)
        return True

    def _check(self) -> None:
        if self.available < 0 or self.reserved < 0:
            raise LedgerInvariantError(f"wallet state went negative: {self.to_json()}")

    def to_json(self) -> dict[str, object]:
        return {
            "available": wire(self.available),
            "reserved": wire(self.reserved),
            "holds": {k: wire(v) for k, v in self.holds.items()},
            "recent_credits": list(self.recent_credits),
        }

    @classmethod
    def from_json(cls, data: dict | None) -> WalletState:
        if not data:
            return cls()
        return cls(
            available=from_wire(data["available"]),
            reserved=from_wire(data["reserved"]),
            holds={k: from_wire(v) for k, v in data.get("holds", {}).items()},
            recent_credits=deque(data.get("recent_credits", ()), maxlen=RECENT_CREDITS_MAX),
        )

"""A wallet's balance in the stream: what it may spend now and what it holds.

Pure, and constant in size: the amounts of the individual holds live with their
transactions (``streams.decided.Decided``, one state key per transaction), so a wallet's
value does not grow with its history. The stream's ``available`` counts only credits the
ledger has posted, minus every open hold: a reservation can never make it negative. Every
change is checked: a settle or release that does not fit the balance raises
``WalletInvariantError`` and the worker stops (docs/topics.md, "Crash loudly").
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.money import ZERO
from streams.exceptions import WalletInvariantError


@dataclass
class WalletState:
    available: Decimal = ZERO
    reserved: Decimal = ZERO
    #: Open holds (reservations waiting for the ledger or a review), for the docs' figures
    #: and the invariant that ``reserved`` is zero when none is open.
    holds_open: int = 0

    def can_reserve(self, amount: Decimal) -> bool:
        return self.available >= amount

    def reserve(self, amount: Decimal) -> None:
        if amount <= 0 or self.available < amount:
            raise WalletInvariantError(f"cannot hold {amount} of available {self.available}")
        self.available -= amount
        self.reserved += amount
        self.holds_open += 1

    def settle(self, held: Decimal, spent: Decimal) -> None:
        """The ledger posted the debit: ``held`` leaves ``reserved``; of it, ``spent`` is
        gone for good and the rest (a partial capture) returns to available."""
        if spent < 0 or spent > held:
            raise WalletInvariantError(f"settle {spent} of a hold of {held}")
        self._unhold(held)
        self.available += held - spent

    def release(self, held: Decimal) -> None:
        """The debit will not happen (failed, declined, expired): the hold returns."""
        self._unhold(held)
        self.available += held

    def credit(self, amount: Decimal) -> None:
        if amount <= 0:
            raise WalletInvariantError(f"a credit must be positive, got {amount}")
        self.available += amount

    def _unhold(self, held: Decimal) -> None:
        if held <= 0 or self.holds_open <= 0 or self.reserved < held:
            raise WalletInvariantError(
                f"a hold of {held} does not fit reserved {self.reserved} "
                f"({self.holds_open} holds open)"
            )
        self.reserved -= held
        self.holds_open -= 1
        if self.holds_open == 0 and self.reserved != 0:
            raise WalletInvariantError(f"no hold is open but {self.reserved} is reserved")

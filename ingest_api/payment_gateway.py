"""The simulated payment gateway's verification side, as the API calls it: a zero-amount
authorisation of a new card and micro-deposits to a new bank account.

Deterministic, like the simulated gateway of payments (``ledger_writer.gateway``): a card
is declined when its CVV is ``000`` or its number ends in ``0002`` (the test cards of the
card networks), otherwise authorised; the micro-deposits' amounts come from a keyed hash
of the method (``domain.payment_methods.micro_deposits``). A real gateway adapter would
take the same calls. The CVV is used for the authorisation only and never kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.payment_methods import micro_deposits

DECLINING_CVV = "000"
DECLINING_SUFFIX = "0002"


@dataclass(frozen=True)
class Authorisation:
    approved: bool
    reason: str


class SimulatedGateway:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def authorise_zero_amount(self, card_number: str, cvv: str) -> Authorisation:
        if cvv == DECLINING_CVV or card_number.endswith(DECLINING_SUFFIX):
            return Authorisation(False, "the issuer declined the zero-amount authorisation")
        return Authorisation(True, "authorised")

    def send_micro_deposits(self, payment_method_id: str) -> tuple[Decimal, Decimal]:
        """The two amounts sent (the customer reads them on the bank statement)."""
        return micro_deposits(self._key, payment_method_id)

"""Rules of payment methods: card numbers, bank routing numbers, verification. Pure.

A card number is checked (13-19 digits, Luhn), its network read from its prefix, and kept
only as a keyed hash (HMAC-SHA256 under the API's secret key: the same card on two users
is the same hash, and without the key no hash can be tested against guessed numbers),
with its last four digits and expiry. A bank account number is kept encrypted (by the
API's vault) with its last four; a US routing number (ABA) must pass its checksum.

>>> card_network("4111111111111111"), luhn_valid("4111111111111111")
('VISA', True)
>>> routing_number_valid("011000015"), routing_number_valid("011000016")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date
from decimal import Decimal

from domain.exceptions import DomainError
from domain.masking import luhn_valid

__all__ = [
    "card_fingerprint",
    "card_network",
    "check_card",
    "luhn_valid",
    "micro_deposits",
    "routing_number_valid",
]

_DIGITS = re.compile(r"[0-9]+", re.ASCII)
#: Card networks by number prefix, the longest first (AMEX 34/37; Mastercard 51-55 and
#: 2221-2720; Visa 4).
_NETWORKS: tuple[tuple[str, range], ...] = (
    ("MASTERCARD", range(2221, 2721)),
    ("AMEX", range(34, 35)),
    ("AMEX", range(37, 38)),
    ("MASTERCARD", range(51, 56)),
    ("VISA", range(4, 5)),
)


def card_network(number: str) -> str | None:
    for network, prefixes in _NETWORKS:
        width = len(str(prefixes.start))
        if int(number[:width]) in prefixes:
            return network
    return None


def check_card(number: str, expiry_month: int, expiry_year: int, today: date) -> str:
    """The card's network, or a ``DomainError`` whose message never repeats the number."""
    if not _DIGITS.fullmatch(number) or not 13 <= len(number) <= 19:
        raise DomainError("a card number is 13 to 19 digits", code="INVALID_CARD_NUMBER")
    if not luhn_valid(number):
        raise DomainError("the card number fails its check digit", code="INVALID_CARD_NUMBER")
    network = card_network(number)
    if network is None:
        raise DomainError("the card's network is not one we take", code="UNSUPPORTED_CARD")
    if not 1 <= expiry_month <= 12 or (expiry_year, expiry_month) < (today.year, today.month):
        raise DomainError("the card has expired", code="CARD_EXPIRED")
    return network


def card_fingerprint(key: bytes, number: str) -> str:
    """HMAC-SHA256 of the number under ``key`` (hex): how a card is stored and compared."""
    return hmac.new(key, number.encode(), hashlib.sha256).hexdigest()


def routing_number_valid(routing: str) -> bool:
    """A US ABA routing number: nine digits, 3-7-1 weighted sum divisible by 10."""
    if not re.fullmatch(r"[0-9]{9}", routing, re.ASCII):
        return False
    digits = [int(c) for c in routing]
    total = sum(weight * digit for weight, digit in zip((3, 7, 1) * 3, digits, strict=True))
    return total % 10 == 0


def micro_deposits(key: bytes, payment_method_id: str) -> tuple[Decimal, Decimal]:
    """The two small amounts (0.01-0.99) the simulated gateway sends to a new bank account;
    the customer proves the account is theirs by naming them. Derived from a keyed hash, so
    nothing needs storing and nobody without the key can compute them."""
    digest = hmac.new(key, b"micro:" + payment_method_id.encode(), hashlib.sha256).digest()
    return Decimal(digest[0] % 99 + 1) / 100, Decimal(digest[1] % 99 + 1) / 100

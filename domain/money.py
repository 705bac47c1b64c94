"""Exact money: ``Decimal`` everywhere, at most the currency's decimals, never float.

Storage columns are DECIMAL(19,4) (the seed's schema), so every amount also fits 15 integer
digits and 4 fractional digits. Amounts travel as decimal strings on the wire.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from domain.exceptions import InvalidAmount, UnsupportedCurrency

#: ISO 4217 minor-unit exponents of the currencies the wallet holds.
CURRENCY_EXPONENTS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "SGD": 2,
    "INR": 2,
    "BRL": 2,
    "MXN": 2,
    "ZAR": 2,
    "NGN": 2,
    "KES": 2,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "BHD": 3,
}

STORAGE_SCALE = 4
STORAGE_QUANTUM = Decimal(1).scaleb(-STORAGE_SCALE)
#: DECIMAL(19,4): 15 integer digits.
AMOUNT_MAX = Decimal("999999999999999.9999")
ZERO = Decimal("0.0000")


def currency_exponent(currency_code: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency_code]
    except KeyError:
        raise UnsupportedCurrency(f"currency {currency_code!r} is not supported") from None


#: The one grammar of an amount a caller sends: ASCII digits, at most one point with digits
#: on both sides. No sign, exponent, spaces, underscores or other digits: Python's Decimal()
#: reads "1_0" as 10, "+3", " 2 ", "1e1" and Arabic-Indic or full-width digits too, and a
#: typo must never move a different sum.
AMOUNT_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
AMOUNT_TEXT_LENGTH_MAX = 40
_AMOUNT_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def amount_text_value(text: object) -> Decimal:
    """The value of an amount written in the one grammar, at most ``AMOUNT_MAX``.

    >>> amount_text_value("0.50")
    Decimal('0.50')
    """
    if not isinstance(text, str):
        raise InvalidAmount('amount must be a decimal string such as "12.50"')
    if len(text) > AMOUNT_TEXT_LENGTH_MAX or not _AMOUNT_TEXT.fullmatch(text):
        raise InvalidAmount(
            f"amount {text[:AMOUNT_TEXT_LENGTH_MAX]!r} is not a plain decimal such as "
            '"12.50": ASCII digits and at most one point; no sign, exponent, spaces or '
            "separators"
        )
    value = Decimal(text)
    # Magnitude first: quantizing a 40-digit number would overflow the decimal context.
    if value > AMOUNT_MAX:
        raise InvalidAmount(f"amount {text!r} is larger than {AMOUNT_MAX}")
    return value


def parse_amount(text: object, currency_code: str) -> Decimal:
    """Parse a caller's amount: a decimal *string*, positive, within the currency's precision.

    >>> parse_amount("12.5", "USD")
    Decimal('12.5000')

    Floats are refused on purpose: 0.1 + 0.2 must never reach the ledger.
    """
    exponent = currency_exponent(currency_code)
    value = amount_text_value(text)
    if value <= 0:
        raise InvalidAmount("amount must be greater than zero")
    if value != value.quantize(Decimal(1).scaleb(-exponent)):
        raise InvalidAmount(
            f"amount {text!r} has more decimals than {currency_code} allows ({exponent})"
        )
    return to_storage(value)


def parse_limit_amount(text: object) -> Decimal:
    """A spending limit's ``max_amount``: the same grammar, zero allowed (nothing may be
    spent), at most the storage scale's decimals (a limit has no currency of its own).

    >>> parse_limit_amount("500.00")
    Decimal('500.0000')
    """
    value = amount_text_value(text)
    if value != value.quantize(STORAGE_QUANTUM):
        raise InvalidAmount(f"amount {text!r} has more than {STORAGE_SCALE} decimals")
    return to_storage(value)


def to_storage(value: Decimal) -> Decimal:
    """Quantize to the storage scale; exact for every amount the parser accepts."""
    return value.quantize(STORAGE_QUANTUM)


def round_to_currency(value: Decimal, currency_code: str) -> Decimal:
    """Round a computed amount (a percentage fee) half-up to the currency's minor unit."""
    quantum = Decimal(1).scaleb(-currency_exponent(currency_code))
    return to_storage(value.quantize(quantum, rounding=ROUND_HALF_UP))


def wire(value: Decimal) -> str:
    """The canonical wire form: plain notation with the storage scale ("12.5000")."""
    return format(to_storage(value), "f")


def from_wire(text: str) -> Decimal:
    """Decode an amount from a record: a finite, non-negative decimal within DECIMAL(19,4).

    Records come from our own producers, but a topic is an input like any other: a value
    out of range is refused here rather than found by a CHECK constraint mid-batch.
    """
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidAmount(f"wire amount {text!r} is not a decimal") from None
    if not value.is_finite() or value < 0 or value > AMOUNT_MAX:
        raise InvalidAmount(f"wire amount {text!r} is not between 0 and {AMOUNT_MAX}")
    if value != value.quantize(STORAGE_QUANTUM):
        raise InvalidAmount(f"wire amount {text!r} has more than {STORAGE_SCALE} decimals")
    return to_storage(value)

"""domain.money: exact parsing, rounding and the wire form of amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.exceptions import DomainError, InvalidAmount, UnsupportedCurrency
from domain.money import (
    AMOUNT_MAX,
    CURRENCY_EXPONENTS,
    ZERO,
    currency_exponent,
    from_wire,
    parse_amount,
    parse_limit_amount,
    round_to_currency,
    to_storage,
    wire,
)


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        ("12.5", "USD", "12.5000"),
        ("12.50", "USD", "12.5000"),
        ("0.01", "USD", "0.0100"),
        ("1", "USD", "1.0000"),
        ("7.25", "EUR", "7.2500"),
        ("1.010", "USD", "1.0100"),  # a trailing zero is not extra precision
        ("0100", "USD", "100.0000"),  # leading zeros change nothing
        ("1500", "JPY", "1500.0000"),
        ("2.000", "JPY", "2.0000"),
        ("0.001", "KWD", "0.0010"),
        ("999999999999999.99", "USD", "999999999999999.9900"),
        ("999999999999999", "JPY", "999999999999999.0000"),
    ],
)
def test_parse_amount_accepts(text: str, currency: str, expected: str) -> None:
    value = parse_amount(text, currency)
    assert value == Decimal(expected)
    # The storage scale is part of the contract: every parsed amount has 4 decimals.
    assert str(value) == expected


@pytest.mark.parametrize(
    "value",
    [12.5, 0.1, 12, 0, True, None, Decimal("12.5"), b"12.5", ["12.5"]],
)
def test_parse_amount_refuses_anything_but_a_string(value: object) -> None:
    with pytest.raises(InvalidAmount) as caught:
        parse_amount(value, "USD")
    assert caught.value.code == "INVALID_AMOUNT"
    assert "decimal string" in caught.value.message


@pytest.mark.parametrize(
    ("text", "currency", "fragment"),
    [
        ("0", "USD", "greater than zero"),
        ("0.00", "USD", "greater than zero"),
        ("-0", "USD", "not a plain decimal"),
        ("-1", "USD", "not a plain decimal"),
        ("-0.01", "USD", "not a plain decimal"),
        ("NaN", "USD", "not a plain decimal"),
        ("sNaN", "USD", "not a plain decimal"),
        ("Infinity", "USD", "not a plain decimal"),
        ("-Infinity", "USD", "not a plain decimal"),
        ("abc", "USD", "not a plain decimal"),
        ("", "USD", "not a plain decimal"),
        ("12,50", "USD", "not a plain decimal"),
        ("1.001", "USD", "more decimals than USD allows (2)"),
        ("0.001", "EUR", "more decimals than EUR allows (2)"),
        ("1.5", "JPY", "more decimals than JPY allows (0)"),
        ("0.0001", "KWD", "more decimals than KWD allows (3)"),
        ("1e-30", "USD", "not a plain decimal"),
        ("1000000000000000", "USD", "larger than 999999999999999.9999"),
        ("1e30", "USD", "not a plain decimal"),
    ],
)
def test_parse_amount_rejects(text: str, currency: str, fragment: str) -> None:
    with pytest.raises(InvalidAmount) as caught:
        parse_amount(text, currency)
    assert caught.value.code == "INVALID_AMOUNT"
    assert fragment in caught.value.message


#: Spellings Python's Decimal() reads but the one amount grammar refuses: a typo "1_00"
#: must not move 100, and what a person reads must be what moves.
NOT_THE_GRAMMAR = [
    "1_0",
    "1_00",
    "\u0661\u0660",  # Arabic-Indic "10"
    "\uff11\uff10",  # full-width "10"
    "\u0967\u0966",  # Devanagari "10"
    "+3.00",
    " 2.00 ",
    "2.00 ",
    "2.00\n",
    "1e1",
    "1E+2",
    "1.",
    ".5",
    "1.2.3",
    "0x10",
    "1 000",
    "1,000.00",
    "\u0661\u066b\u0665",  # Arabic-Indic "1.5" with the Arabic decimal separator
    "1" * 41,
]


@pytest.mark.parametrize("text", NOT_THE_GRAMMAR)
def test_parse_amount_refuses_what_is_not_the_one_grammar(text: str) -> None:
    with pytest.raises(InvalidAmount, match="not a plain decimal"):
        parse_amount(text, "USD")
    with pytest.raises(InvalidAmount, match="not a plain decimal"):
        parse_limit_amount(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", "0.0000"), ("500.00", "500.0000"), ("0.0001", "0.0001"), ("1500", "1500.0000")],
)
def test_parse_limit_amount_accepts_zero_and_the_storage_scale(text: str, expected: str) -> None:
    assert str(parse_limit_amount(text)) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1.00001", "more than 4 decimals"),
        ("-1", "not a plain decimal"),
        ("1000000000000000", "larger than"),
        (10, "decimal string"),
    ],
)
def test_parse_limit_amount_rejects(text: object, fragment: str) -> None:
    with pytest.raises(InvalidAmount, match=fragment):
        parse_limit_amount(text)


@pytest.mark.parametrize(
    "text",
    [
        # Many digits both sides: quantizing to the currency overflows the 28-digit context.
        "99999999999999999999999999.999",
        "1234567890123456789012345678.123",
    ],
)
def test_parse_amount_rejects_huge_over_precise_amount_as_invalid_amount(text: str) -> None:
    # A caller's bad string must become INVALID_AMOUNT (HTTP 422), never a
    # decimal.InvalidOperation that escapes as a 500.
    with pytest.raises(InvalidAmount) as caught:
        parse_amount(text, "USD")
    assert caught.value.code == "INVALID_AMOUNT"


@pytest.mark.parametrize("currency", ["XXX", "usd", "", "BTC"])
def test_parse_amount_rejects_unsupported_currency(currency: str) -> None:
    with pytest.raises(UnsupportedCurrency) as caught:
        parse_amount("1.00", currency)
    assert caught.value.code == "UNSUPPORTED_CURRENCY"
    assert repr(currency) in caught.value.message
    assert isinstance(caught.value, DomainError)


def test_currency_exponents() -> None:
    assert currency_exponent("USD") == 2
    assert currency_exponent("JPY") == 0
    assert currency_exponent("KRW") == 0
    assert currency_exponent("KWD") == 3
    assert currency_exponent("BHD") == 3
    assert all(0 <= e <= 4 for e in CURRENCY_EXPONENTS.values())  # storage holds 4 decimals
    with pytest.raises(UnsupportedCurrency):
        currency_exponent("ZZZ")


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        ("0.005", "USD", "0.0100"),  # half-up, not banker's rounding
        ("0.015", "USD", "0.0200"),
        ("0.025", "USD", "0.0300"),  # banker's would give 0.02
        ("0.0049", "USD", "0.0000"),
        ("1.2345", "EUR", "1.2300"),
        ("1.235", "EUR", "1.2400"),
        ("2.5", "JPY", "3.0000"),
        ("0.5", "JPY", "1.0000"),
        ("0.4999", "JPY", "0.0000"),
        ("1.0005", "KWD", "1.0010"),
        ("1.0004", "KWD", "1.0000"),
        ("7", "USD", "7.0000"),
    ],
)
def test_round_to_currency_half_up(value: str, currency: str, expected: str) -> None:
    rounded = round_to_currency(Decimal(value), currency)
    assert rounded == Decimal(expected)
    assert str(rounded) == expected


def test_round_to_currency_unsupported() -> None:
    with pytest.raises(UnsupportedCurrency):
        round_to_currency(Decimal("1.005"), "XYZ")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("12.5"), "12.5000"),
        (Decimal("0"), "0.0000"),
        (Decimal("1E+3"), "1000.0000"),  # plain notation, never exponent form
        (Decimal("0.0001"), "0.0001"),
        (AMOUNT_MAX, "999999999999999.9999"),
    ],
)
def test_wire_round_trip(value: Decimal, text: str) -> None:
    assert wire(value) == text
    assert from_wire(text) == value
    assert from_wire(wire(value)) == value
    assert wire(from_wire(text)) == text


def test_wire_of_parsed_amounts_round_trips() -> None:
    for text in ("12.5", "0.01", "999999999999999.99", "100"):
        parsed = parse_amount(text, "USD")
        assert from_wire(wire(parsed)) == parsed
        assert str(from_wire(wire(parsed))) == wire(parsed)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("abc", "not a decimal"),
        ("", "not a decimal"),
        ("NaN", "not between 0 and"),
        ("Infinity", "not between 0 and"),
        ("-3.25", "not between 0 and"),  # a record never carries a negative amount
        ("1e20", "not between 0 and"),  # beyond DECIMAL(19,4)
        ("1.00001", "more than 4 decimals"),
    ],
)
def test_from_wire_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InvalidAmount) as caught:
        from_wire(text)
    assert fragment in caught.value.message


def test_to_storage_and_zero() -> None:
    assert str(to_storage(Decimal("1"))) == "1.0000"
    assert str(to_storage(Decimal("1.23"))) == "1.2300"
    assert str(ZERO) == "0.0000"
    assert AMOUNT_MAX == Decimal("999999999999999.9999")

"""Mask card numbers (PANs) and IBANs in free text before it is stored or published. Pure.

Callers write payment details into descriptions, metadata and references ("refund to card
4111 1111 1111 1111"); once on Kafka, in PostgreSQL and in ClickHouse such a value is copied
everywhere and cannot be taken back, so the API masks it at the edge. What is masked:

- a PAN: 13-19 digits, written together or in groups joined by one space or dash, that
  pass the Luhn check: ``4111 1111 1111 1111`` → ``**** **** **** 1111``;
- an IBAN: two letters, two check digits and 11-30 letters or digits (a BBAN, holding at
  least 8 digits), written together or in groups joined by one space, its letters all of
  one case, that pass the ISO 13616 mod-97 check:
  ``DE89 3704 0044 0532 0130 00`` → ``**** **** **** **** **30 00``.

Only the last four characters of a match stay; separators and the text's length are kept.
A number that fails its check (an order number, a phone number) is left as written: the
checks are what tell a card number from any other long number. A value can only be matched
whole: a window of separated groups never splits a group, and an IBAN never starts inside
a word. Digits glued to letters ("card#4111111111111111x") are still masked: for card
numbers, masking too much is the safe side.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MASK = "*"
KEPT_CHARACTERS = 4
PAN_DIGITS_MIN = 13
PAN_DIGITS_MAX = 19
IBAN_LENGTH_MIN = 15
IBAN_LENGTH_MAX = 34
BBAN_DIGITS_MIN = 8

#: Digits in groups joined by one space or dash ("4111-1111 1111 1111"), never at an edge.
_DIGIT_RUN = re.compile(r"[0-9]+(?:[ -][0-9]+)*", re.ASCII)
_DIGIT_GROUP = re.compile(r"[0-9]+", re.ASCII)
#: Letters and digits in groups joined by one space, from a country code and check digits
#: that do not continue a word ("xDE89..." is not an IBAN's start).
_IBAN_RUN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}[A-Za-z0-9]*(?: [A-Za-z0-9]+)*", re.ASCII
)
_ALNUM_GROUP = re.compile(r"[A-Za-z0-9]+", re.ASCII)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a card number, given as ASCII digits only.

    >>> luhn_valid("4111111111111111"), luhn_valid("4111111111111112")
    (True, False)
    """
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """The ISO 13616 check of an IBAN without separators: its number mod 97 is 1.

    >>> iban_valid("DE89370400440532013000"), iban_valid("DE88370400440532013000")
    (True, False)
    """
    if not IBAN_LENGTH_MIN <= len(compact) <= IBAN_LENGTH_MAX or not compact.isascii():
        return False
    if not (compact[:2].isalpha() and compact[2:4].isdigit() and compact.isalnum()):
        return False
    text = compact.upper()
    rearranged = text[4:] + text[:4]
    remainder = 0
    for char in rearranged:  # letters count as 10..35; digit by digit keeps numbers small
        value = int(char, 36)
        remainder = (remainder * (100 if value > 9 else 10) + value) % 97
    return remainder == 1


def _masked(text: str) -> str:
    """Every letter and digit but the last few become ``*``; separators stay."""
    kept = 0
    chars = list(text)
    for index in range(len(chars) - 1, -1, -1):
        if chars[index].isalnum():
            if kept < KEPT_CHARACTERS:
                kept += 1
            else:
                chars[index] = MASK
    return "".join(chars)


def _is_pan(compact: str) -> bool | None:
    """None once the window is too long for any card number (longer ones cannot match)."""
    if len(compact) > PAN_DIGITS_MAX:
        return None
    return len(compact) >= PAN_DIGITS_MIN and luhn_valid(compact)


def _is_iban(compact: str) -> bool | None:
    """An IBAN as people write one: its letters all of one case, its BBAN mostly digits.

    The two extra conditions keep words out: a run like "ab12 invoice for june" would pass
    mod 97 once in 97 tries, but every country's BBAN holds at least ``BBAN_DIGITS_MIN``
    digits.
    """
    if len(compact) > IBAN_LENGTH_MAX:
        return None
    if sum(char.isdigit() for char in compact[4:]) < BBAN_DIGITS_MIN:
        return False
    if not (compact.isupper() or compact.islower()):
        return False
    return iban_valid(compact)


def _mask_windows(run: str, group: re.Pattern[str], check: Callable[[str], bool | None]) -> str:
    """Mask, left to right, the longest windows of whole groups of ``run`` that pass ``check``.

    Windows start and end on group boundaries, so "4111 1111 1111 1111 12 26" (a card and
    its expiry) masks the card's four groups, and a match never cuts a number in two.
    """
    groups = [(m.start(), m.end()) for m in group.finditer(run)]
    spans: list[tuple[int, int]] = []
    first = 0
    while first < len(groups):
        hit = None
        compact = ""
        for last in range(first, len(groups)):
            compact += run[groups[last][0] : groups[last][1]]
            verdict = check(compact)
            if verdict is None:
                break
            if verdict:
                hit = last
        if hit is None:
            first += 1
            continue
        spans.append((groups[first][0], groups[hit][1]))
        first = hit + 1
    for start, end in reversed(spans):
        run = run[:start] + _masked(run[start:end]) + run[end:]
    return run


def mask_ibans(text: str) -> str:
    """``text`` with every IBAN-like value masked (see the module's docstring)."""
    return _IBAN_RUN.sub(lambda m: _mask_windows(m.group(), _ALNUM_GROUP, _is_iban), text)


def mask_pans(text: str) -> str:
    """``text`` with every card-number-like value masked (see the module's docstring)."""
    return _DIGIT_RUN.sub(lambda m: _mask_windows(m.group(), _DIGIT_GROUP, _is_pan), text)


def mask_sensitive(text: str) -> str:
    """``text`` with every IBAN and card number masked but for its last four characters.

    >>> mask_sensitive("card 4111 1111 1111 1111, order 1234567812345678")
    'card **** **** **** 1111, order 1234567812345678'
    >>> mask_sensitive("to DE89 3704 0044 0532 0130 00 please")
    'to **** **** **** **** **30 00 please'
    """
    if not any("0" <= char <= "9" for char in text):  # the common case costs one scan
        return text
    return mask_pans(mask_ibans(text))

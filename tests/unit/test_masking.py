"""domain.masking: card numbers and IBANs are masked in free text, other numbers are not."""

from __future__ import annotations

import pytest

from domain.masking import iban_valid, luhn_valid, mask_sensitive

#: Test card numbers the networks publish (all Luhn-valid), 13 to 19 digits.
CARDS = [
    "4111111111111111",  # Visa, 16
    "4222222222222",  # Visa, 13
    "5555555555554444",  # Mastercard
    "2223003122003222",  # Mastercard 2-series
    "378282246310005",  # American Express, 15
    "6011111111111117",  # Discover
    "3530111333300000",  # JCB
    "6200000000000005",  # UnionPay
    "6304000000000000000",  # Maestro, 19
]
#: IBANs in their electronic form (the ISO 13616 examples of each registry).
IBANS = [
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "NO9386011117947",  # the shortest, 15
    "MT84MALT011000012345MTLCAST001S",
    "CH9300762011623852957",
    "BE68539007547034",
]


@pytest.mark.parametrize("card", CARDS)
def test_published_test_cards_pass_luhn(card: str) -> None:
    assert luhn_valid(card)
    assert not luhn_valid(card[:-1] + str((int(card[-1]) + 1) % 10))


@pytest.mark.parametrize("iban", IBANS)
def test_published_ibans_pass_mod_97(iban: str) -> None:
    assert iban_valid(iban)
    broken = iban[:2] + f"{(int(iban[2:4]) + 1) % 100:02d}" + iban[4:]
    assert not iban_valid(broken)


@pytest.mark.parametrize("card", CARDS)
def test_a_card_number_keeps_only_its_last_four_digits(card: str) -> None:
    masked = mask_sensitive(f"refund to {card} please")
    assert masked == f"refund to {'*' * (len(card) - 4)}{card[-4:]} please"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111 1111 1111 1111", "**** **** **** 1111"),
        ("4111-1111-1111-1111", "****-****-****-1111"),
        ("card 4111 1111 1111 1111 exp 12 26", "card **** **** **** 1111 exp 12 26"),
        ("4111 1111 1111 1111 12 26", "**** **** **** 1111 12 26"),  # card, then its expiry
        ("3782 822463 10005", "**** ****** *0005"),  # Amex grouping
        ("pan=4111111111111111;cvv", "pan=************1111;cvv"),
        ("x4111111111111111y", "x************1111y"),  # glued to letters: still a card
        ("two: 4111111111111111, 5555555555554444", "two: ************1111, ************4444"),
    ],
)
def test_cards_as_people_write_them(text: str, expected: str) -> None:
    assert mask_sensitive(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112",  # 16 digits, not Luhn-valid: an order number
        "order 1234567812345678",
        "order 1234 5678 1234 5678",
        "ref 41111111111111110000",  # 22 digits together: no card inside a longer number
        "call 555 123 4567",  # too short
        "411111111111",  # 12 digits
        "4111  1111  1111  1111",  # two spaces are not one number's separators
        "4111_1111_1111_1111",
        "amount 12.50 on 2026-01-31",
        "",
    ],
)
def test_other_numbers_are_left_as_written(text: str) -> None:
    assert mask_sensitive(text) == text


@pytest.mark.parametrize("iban", IBANS)
def test_an_iban_keeps_only_its_last_four_characters(iban: str) -> None:
    assert mask_sensitive(f"to {iban}.") == f"to {'*' * (len(iban) - 4)}{iban[-4:]}."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DE89 3704 0044 0532 0130 00", "**** **** **** **** **30 00"),
        ("iban: DE89 3704 0044 0532 0130 00 thanks", "iban: **** **** **** **** **30 00 thanks"),
        ("gb82 west 1234 5698 7654 32", "**** **** **** **** **54 32"),  # lower case
        ("GB82 WEST 1234 5698 7654 32 and DE89370400440532013000",
         "**** **** **** **** **54 32 and ******************3000"),
    ],
)  # fmt: skip
def test_ibans_as_people_write_them(text: str, expected: str) -> None:
    assert mask_sensitive(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "DE88370400440532013000",  # wrong check digits
        "XDE89370400440532013000",  # inside a longer word
        "De89370400440532013000",  # mixed case is not how an IBAN is written
        "ab12 invoice for june 2026",  # a word run that mod 97 could pass by chance
        "AB12CDEFGHIJKLMNOPQR",  # letters only after the check digits
    ],
)
def test_other_codes_are_left_as_written(text: str) -> None:
    assert mask_sensitive(text) == text


def test_masking_keeps_length_and_is_idempotent() -> None:
    text = "pay 4111 1111 1111 1111 from DE89370400440532013000 ok"
    once = mask_sensitive(text)
    assert len(once) == len(text)
    assert mask_sensitive(once) == once
    assert "4111 1111" not in once and "37040044" not in once


def test_a_long_text_of_digit_groups_is_masked_in_bounded_work() -> None:
    # 500 groups: every window is tried, but none longer than 19 digits.
    text = " ".join(["12"] * 500) + " 4111111111111111"
    assert mask_sensitive(text).endswith("************1111")

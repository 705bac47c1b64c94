"""Payment methods' rules: card checks (Luhn, network, expiry), the keyed card hash, ABA
routing numbers, micro-deposits, and the vault's encryption bound to its row."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from domain.exceptions import DomainError
from domain.payment_methods import (
    card_fingerprint,
    card_network,
    check_card,
    micro_deposits,
    routing_number_valid,
)
from ingest_api.payment_gateway import SimulatedGateway
from ingest_api.payment_vault import PaymentVault

TODAY = date(2026, 12, 8)


@pytest.mark.parametrize(
    ("number", "network"),
    [
        ("4111111111111111", "VISA"),
        ("5555555555554444", "MASTERCARD"),
        ("2223003122003222", "MASTERCARD"),
        ("378282246310005", "AMEX"),
    ],
)
def test_cards_are_checked_and_their_network_read(number: str, network: str) -> None:
    assert check_card(number, 12, 2030, TODAY) == network == card_network(number)


@pytest.mark.parametrize(
    ("number", "month", "year", "code"),
    [
        ("4111111111111112", 12, 2030, "INVALID_CARD_NUMBER"),
        ("41111111", 12, 2030, "INVALID_CARD_NUMBER"),
        ("6011111111111117", 12, 2030, "UNSUPPORTED_CARD"),
        ("4111111111111111", 11, 2026, "CARD_EXPIRED"),
    ],
)
def test_bad_cards_are_refused_without_repeating_the_number(
    number: str, month: int, year: int, code: str
) -> None:
    with pytest.raises(DomainError) as refused:
        check_card(number, month, year, TODAY)
    assert refused.value.code == code and number not in refused.value.message


def test_the_card_hash_is_keyed() -> None:
    a, b = b"k" * 32, b"j" * 32
    assert card_fingerprint(a, "4111111111111111") == card_fingerprint(a, "4111111111111111")
    assert card_fingerprint(a, "4111111111111111") != card_fingerprint(b, "4111111111111111")
    assert "4111111111111111" not in card_fingerprint(a, "4111111111111111")


def test_routing_numbers_pass_their_checksum() -> None:
    assert routing_number_valid("011000015") and routing_number_valid("021000021")
    assert not routing_number_valid("021000022")
    assert not routing_number_valid("02100002") and not routing_number_valid("02100002x")


def test_micro_deposits_are_small_and_stable() -> None:
    first = micro_deposits(b"k" * 32, "m-1")
    assert first == micro_deposits(b"k" * 32, "m-1")
    assert all(Decimal("0.01") <= amount <= Decimal("0.99") for amount in first)


def test_the_simulated_gateway_declines_the_test_cards() -> None:
    gateway = SimulatedGateway(b"k" * 32)
    assert gateway.authorise_zero_amount("4111111111111111", "123").approved
    assert not gateway.authorise_zero_amount("4111111111111111", "000").approved
    assert not gateway.authorise_zero_amount("4000000000000002", "123").approved


def test_the_vault_keeps_its_keys_and_binds_ciphertexts_to_their_row(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    vault = PaymentVault.load(keys)
    assert keys.stat().st_mode & 0o777 == 0o600
    assert PaymentVault.load(keys) == vault  # the same keys on every load
    row = str(uuid.uuid4())
    sealed = vault.encrypt("000123456789", row)
    assert "123456789" not in sealed
    assert vault.decrypt(sealed, row) == "000123456789"
    with pytest.raises(InvalidTag):
        vault.decrypt(sealed, str(uuid.uuid4()))

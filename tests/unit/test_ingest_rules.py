"""The API's pure rules: wallet access, amounts and fees; API key hashing; request
fingerprints; the bounded TTL cache (the rate limits: test_ratelimit.py)."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from domain.access import hash_api_key
from domain.inputs import ERROR_CODES
from domain.transactions import FeeSchedule
from ingest_api import caching
from ingest_api.caching import TtlCache
from ingest_api.exceptions import ApiError, Forbidden, NotFound, Unprocessable
from ingest_api.repository import WalletAccess
from ingest_api.schemas import CreateTransaction
from ingest_api.service import check_transaction, request_fingerprint

MINE = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
MINE_TOO = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000002")
THEIRS = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000003")
EURO = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000004")
FROZEN = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000005")
CLOSED = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000006")
GHOST = uuid.UUID("dddddddd-0000-4000-8000-000000000007")
ME = uuid.UUID("11111111-0000-4000-8000-000000000001")
SOMEONE = uuid.UUID("22222222-0000-4000-8000-000000000002")

WALLETS = {
    MINE: WalletAccess(MINE, ME, "USD", "ACTIVE", True),
    MINE_TOO: WalletAccess(MINE_TOO, ME, "USD", "ACTIVE", True),
    THEIRS: WalletAccess(THEIRS, SOMEONE, "USD", "ACTIVE", False),
    EURO: WalletAccess(EURO, ME, "EUR", "ACTIVE", True),
    FROZEN: WalletAccess(FROZEN, ME, "USD", "SUSPENDED", True),
    CLOSED: WalletAccess(CLOSED, ME, "USD", "CLOSED", True),
}
FEES = FeeSchedule.parse(
    {"WITHDRAWAL": {"basis_points": 50, "fixed": "1.00"}, "TRANSFER": {"basis_points": 25}}
)


def body(
    transaction_type: str,
    source: uuid.UUID | None = None,
    destination: uuid.UUID | None = None,
    amount: Any = "10.00",
    currency: str = "USD",
    **extra: Any,
) -> CreateTransaction:
    return CreateTransaction(
        transaction_type=transaction_type,
        source_wallet_id=source,
        destination_wallet_id=destination,
        amount=amount,
        currency_code=currency,
        **extra,
    )


def refused(item: CreateTransaction) -> ApiError:
    with pytest.raises(ApiError) as caught:
        check_transaction(item, WALLETS, FEES)
    return caught.value


# --- check_transaction: accepted -----------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "amount", "fee", "source", "destination"),
    [
        (body("DEPOSIT", None, MINE, "25"), "25", "0", None, MINE),
        (body("WITHDRAWAL", MINE, None, "100.00"), "100", "1.50", MINE, None),
        (body("TRANSFER", MINE, MINE_TOO, "100.00"), "100", "0.25", MINE, MINE_TOO),
        # A transfer may credit anyone's wallet ...
        (body("TRANSFER", MINE, THEIRS, "2.00"), "2", "0.01", MINE, THEIRS),
        # ... and so may a payment; a payment may also leave to an outside merchant.
        (body("PAYMENT", MINE, THEIRS, "5"), "5", "0", MINE, THEIRS),
        (body("PAYMENT", MINE, None, "5"), "5", "0", MINE, None),
    ],
)
def test_check_transaction_accepts(
    item: CreateTransaction,
    amount: str,
    fee: str,
    source: uuid.UUID | None,
    destination: uuid.UUID | None,
) -> None:
    got_amount, got_fee, got_source, got_destination = check_transaction(item, WALLETS, FEES)
    assert got_amount == Decimal(amount) and str(got_amount) == f"{Decimal(amount):.4f}"
    assert got_fee == Decimal(fee)
    assert got_source == (WALLETS[source] if source else None)
    assert got_destination == (WALLETS[destination] if destination else None)


def test_fee_comes_from_the_schedule() -> None:
    item = body("WITHDRAWAL", MINE, None, "10.01")
    assert check_transaction(item, WALLETS, FEES)[1] == Decimal("1.05")  # 0.05005 + 1.00
    assert check_transaction(item, WALLETS, FeeSchedule())[1] == Decimal("0")


# --- check_transaction: refused ------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "role", "wallet"),
    [
        (body("WITHDRAWAL", GHOST, None), "source", GHOST),
        (body("TRANSFER", MINE, GHOST), "destination", GHOST),
        (body("DEPOSIT", None, GHOST), "destination", GHOST),
        (body("PAYMENT", GHOST, MINE), "source", GHOST),
    ],
)
def test_unknown_wallet_is_not_found(item: CreateTransaction, role: str, wallet: uuid.UUID) -> None:
    error = refused(item)
    assert isinstance(error, NotFound)
    assert (error.status_code, error.code) == (404, "WALLET_NOT_FOUND")
    assert error.message == f"{role} wallet {wallet} does not exist"


@pytest.mark.parametrize(
    ("item", "role"),
    [
        (body("WITHDRAWAL", THEIRS, None), "source"),
        (body("TRANSFER", THEIRS, MINE), "source"),
        (body("PAYMENT", THEIRS, None), "source"),
        # Money into a wallet from outside is still the owner's business.
        (body("DEPOSIT", None, THEIRS), "destination"),
    ],
)
def test_wallet_not_owned_is_forbidden(item: CreateTransaction, role: str) -> None:
    error = refused(item)
    assert isinstance(error, Forbidden)
    assert (error.status_code, error.code) == (403, "WALLET_FORBIDDEN")
    assert f"{role} wallet {THEIRS}" in error.message


@pytest.mark.parametrize(
    ("item", "wallet", "status"),
    [
        (body("WITHDRAWAL", FROZEN, None), FROZEN, "SUSPENDED"),
        (body("TRANSFER", CLOSED, MINE), CLOSED, "CLOSED"),
        (body("TRANSFER", MINE, CLOSED), CLOSED, "CLOSED"),
        (body("DEPOSIT", None, FROZEN), FROZEN, "SUSPENDED"),
    ],
)
def test_inactive_wallet(item: CreateTransaction, wallet: uuid.UUID, status: str) -> None:
    error = refused(item)
    assert isinstance(error, Unprocessable)
    assert (error.status_code, error.code) == (422, "WALLET_NOT_ACTIVE")
    assert error.message.endswith(f"wallet {wallet} is {status}")


@pytest.mark.parametrize(
    "item",
    [
        body("WITHDRAWAL", EURO, None, currency="USD"),
        body("TRANSFER", MINE, EURO, currency="USD"),
        body("TRANSFER", EURO, MINE, currency="EUR"),
    ],
)
def test_currency_mismatch(item: CreateTransaction) -> None:
    error = refused(item)
    assert isinstance(error, Unprocessable)
    assert error.code == "CURRENCY_MISMATCH"
    assert "holds" in error.message


@pytest.mark.parametrize(
    "amount",
    [10.5, 10, "-5", "abc", "NaN", "Infinity", "1e16", None, True, "1_0", " 2.00 ", "+3.00"],
)
def test_an_amount_not_in_the_grammar_is_refused_by_the_schema(amount: Any) -> None:
    # The edge maps this pydantic error type to INVALID_AMOUNT (domain/inputs.py).
    with pytest.raises(ValidationError) as caught:
        body("WITHDRAWAL", MINE, None, amount)
    assert [e["type"] for e in caught.value.errors()] == ["invalid_amount"]
    assert ERROR_CODES["invalid_amount"] == "INVALID_AMOUNT"


@pytest.mark.parametrize("amount", ["0", "0.00", "1.001"])
def test_bad_amount(amount: Any) -> None:
    error = refused(body("WITHDRAWAL", MINE, None, amount))
    assert isinstance(error, Unprocessable)
    assert (error.status_code, error.code) == (422, "INVALID_AMOUNT")


def test_amount_precision_follows_the_currency() -> None:
    error = refused(body("WITHDRAWAL", EURO, None, "1.005", currency="EUR"))
    assert error.code == "INVALID_AMOUNT"
    assert "EUR allows (2)" in error.message


def test_unsupported_currency() -> None:
    error = refused(body("WITHDRAWAL", MINE, None, currency="XXX"))
    assert isinstance(error, Unprocessable)
    assert error.code == "UNSUPPORTED_CURRENCY"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (body("TRANSFER", MINE, MINE), "source and destination are the same wallet"),
        (body("PAYMENT", MINE, MINE), "source and destination are the same wallet"),
        (body("DEPOSIT", MINE, MINE_TOO), "a DEPOSIT comes from outside: omit source_wallet_id"),
        (
            body("WITHDRAWAL", MINE, MINE_TOO),
            "a WITHDRAWAL goes outside: omit destination_wallet_id",
        ),
        (body("TRANSFER", MINE, None), "a TRANSFER needs destination_wallet_id"),
    ],
)
def test_wallets_that_do_not_fit_the_type(item: CreateTransaction, message: str) -> None:
    error = refused(item)
    assert isinstance(error, Unprocessable)
    assert (error.code, error.message) == ("INVALID_TRANSACTION", message)


def test_shape_is_checked_before_the_wallets_are_looked_up() -> None:
    # An unknown wallet in an ill-formed request: the request's own fault is reported.
    error = refused(body("TRANSFER", GHOST, GHOST))
    assert error.code == "INVALID_TRANSACTION"
    error = refused(body("WITHDRAWAL", GHOST, None, "0"))
    assert error.code == "INVALID_AMOUNT"


# --- hashing and fingerprints --------------------------------------------------------------


def test_hash_api_key() -> None:
    assert hash_api_key("wp_demo_key") == hashlib.sha256(b"wp_demo_key").hexdigest()
    assert len(hash_api_key("x")) == 64
    assert hash_api_key("a") != hash_api_key("b")
    assert hash_api_key("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_request_fingerprint_is_stable_and_sensitive() -> None:
    base = body("TRANSFER", MINE, THEIRS, "10.00", description="rent", metadata={"a": 1, "b": "x"})
    same = body("TRANSFER", MINE, THEIRS, "10.00", description="rent", metadata={"b": "x", "a": 1})
    assert request_fingerprint(base) == request_fingerprint(same)
    assert len(request_fingerprint(base)) == 64
    for different in [
        body("TRANSFER", MINE, THEIRS, "10.01", description="rent", metadata={"a": 1, "b": "x"}),
        body("TRANSFER", MINE, MINE_TOO, "10.00", description="rent", metadata={"a": 1, "b": "x"}),
        body("PAYMENT", MINE, THEIRS, "10.00", description="rent", metadata={"a": 1, "b": "x"}),
        body("TRANSFER", MINE, THEIRS, "10.00", description="Rent", metadata={"a": 1, "b": "x"}),
        body("TRANSFER", MINE, THEIRS, "10.00", description="rent", metadata={"a": 2, "b": "x"}),
        body(
            "TRANSFER",
            MINE,
            THEIRS,
            "10.00",
            description="rent",
            metadata={"a": 1, "b": "x"},
            external_reference_id="ext-1",
        ),
    ]:
        assert request_fingerprint(different) != request_fingerprint(base)


# --- TTL cache -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(caching.time, "monotonic", fake)
    return fake


def test_cache_returns_until_the_ttl_passes(clock: Clock) -> None:
    cache: TtlCache[str, int] = TtlCache(entries_max=10, ttl_ms=5_000)
    assert cache.get("k") is None
    cache.put("k", 1)
    assert cache.get("k") == 1
    clock.now += 5.0
    assert cache.get("k") == 1  # exactly at the TTL: still fresh
    clock.now += 0.001
    assert cache.get("k") is None
    assert cache.get("k") is None  # and it was dropped
    assert len(cache._entries) == 0


def test_cache_put_refreshes_the_ttl(clock: Clock) -> None:
    cache: TtlCache[str, int] = TtlCache(entries_max=10, ttl_ms=1_000)
    cache.put("k", 1)
    clock.now += 0.9
    cache.put("k", 2)
    clock.now += 0.9
    assert cache.get("k") == 2


def test_cache_with_zero_ttl_expires_at_once(clock: Clock) -> None:
    cache: TtlCache[str, int] = TtlCache(entries_max=10, ttl_ms=0)
    cache.put("k", 1)
    clock.now += 0.000001
    assert cache.get("k") is None


def test_cache_is_lru_bounded(clock: Clock) -> None:
    cache: TtlCache[str, int] = TtlCache(entries_max=3, ttl_ms=60_000)
    for n, key in enumerate("abc"):
        cache.put(key, n)
    assert cache.get("a") == 0  # touching "a" makes "b" the least recently used
    cache.put("d", 3)
    assert len(cache._entries) == 3
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c"), cache.get("d")) == (0, 2, 3)
    for n in range(100):
        cache.put(f"k{n}", n)
    assert len(cache._entries) == 3
    assert [cache.get(k) for k in ("k97", "k98", "k99")] == [97, 98, 99]


def test_cache_discard(clock: Clock) -> None:
    cache: TtlCache[str, int] = TtlCache(entries_max=3, ttl_ms=60_000)
    cache.put("k", 1)
    cache.discard("k")
    cache.discard("never-there")
    assert cache.get("k") is None


def test_cache_falsy_values_are_hits(clock: Clock) -> None:
    cache: TtlCache[str, int] = TtlCache(entries_max=3, ttl_ms=60_000)
    cache.put("zero", 0)
    assert cache.get("zero") == 0

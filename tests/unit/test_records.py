"""domain.records: the wire schema of every Kafka record, and how decoding refuses bad bytes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from domain.exceptions import RecordDecodeError
from domain.records import (
    SCHEMA_VERSION,
    DuplicateDiscarded,
    PostTransaction,
    Record,
    TransactionFacts,
    TransactionFailed,
    TransactionPosted,
    TransactionRejected,
    TransactionRequested,
    WalletCredited,
    decode_ledger_event,
    decode_ledger_input,
    decode_requested,
    decode_transaction_record,
    decode_wallet_credited,
    encode,
    utc_now,
)
from domain.transactions import TransactionStatus, TransactionType

SOURCE = uuid.UUID("11111111-1111-4111-8111-111111111111")
DESTINATION = uuid.UUID("22222222-2222-4222-8222-222222222222")
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)


def facts(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "transaction_id": uuid.UUID("33333333-3333-4333-8333-333333333333"),
        "transaction_type": TransactionType.TRANSFER,
        "source_wallet_id": SOURCE,
        "destination_wallet_id": DESTINATION,
        "source_user_id": uuid.UUID("44444444-4444-4444-8444-444444444444"),
        "destination_user_id": uuid.UUID("55555555-5555-4555-8555-555555555555"),
        "amount": Decimal("12.5"),
        "fee_amount": Decimal("0.25"),
        "total_amount": Decimal("12.75"),
        "currency_code": "USD",
        "description": "rent",
        "client_id": uuid.UUID("66666666-6666-4666-8666-666666666666"),
        "idempotency_key": "key-1",
        "ip_address": "203.0.113.7",
        "user_agent": "pytest",
        "metadata": {"channel": "web", "terminal_id": "T-9", "n": 3, "ok": True, "x": None},
        "requested_at": T0,
    }
    base.update(overrides)
    return base


RECORD_FACTORIES: dict[str, Callable[[], Record]] = {
    "TransactionRequested": lambda: TransactionRequested(**facts()),
    "PostTransaction": lambda: PostTransaction(
        **facts(), risk_score=Decimal("0.125"), decided_at=T1
    ),
    "TransactionRejected": lambda: TransactionRejected(
        **facts(),
        reason_code="INSUFFICIENT_FUNDS",
        reason_message="available 1.0000 USD is less than 12.75",
        risk_score=None,
        decided_at=T1,
    ),
    "TransactionPosted": lambda: TransactionPosted(
        **facts(), risk_score=Decimal("0.5"), completed_at=T1
    ),
    "TransactionFailed": lambda: TransactionFailed(
        **facts(), reason_code="WALLET_NOT_FOUND", reason_message="gone", failed_at=T1
    ),
    "DuplicateDiscarded": lambda: DuplicateDiscarded(**facts(), discarded_at=T1),
    "WalletCredited": lambda: WalletCredited(
        wallet_id=DESTINATION,
        transaction_id=uuid.UUID("33333333-3333-4333-8333-333333333333"),
        amount=Decimal("12.5"),
        currency_code="USD",
    ),
}

DECODERS: dict[str, Callable[[bytes | None], Record]] = {
    "TransactionRequested": decode_requested,
    "PostTransaction": decode_ledger_input,
    "TransactionRejected": decode_ledger_input,
    "TransactionPosted": decode_ledger_event,
    "TransactionFailed": decode_ledger_event,
    "DuplicateDiscarded": decode_ledger_event,
    "WalletCredited": decode_wallet_credited,
}

TRANSACTION_KINDS = [k for k in RECORD_FACTORIES if k != "WalletCredited"]
ALL_DECODERS = [
    decode_requested,
    decode_ledger_input,
    decode_ledger_event,
    decode_wallet_credited,
    decode_transaction_record,
]


def as_dict(record: Record) -> dict[str, Any]:
    return json.loads(encode(record))


def as_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(RECORD_FACTORIES))
def test_encode_decode_round_trip(kind: str) -> None:
    record = RECORD_FACTORIES[kind]()
    payload = encode(record)
    assert isinstance(payload, bytes)
    decoded = DECODERS[kind](payload)
    assert type(decoded) is type(record)
    assert decoded == record
    assert decoded.event_id == record.event_id
    assert encode(decoded) == payload


@pytest.mark.parametrize("kind", TRANSACTION_KINDS)
def test_decode_transaction_record_dispatches_on_kind(kind: str) -> None:
    record = RECORD_FACTORIES[kind]()
    decoded = decode_transaction_record(encode(record))
    assert type(decoded) is type(record)
    assert decoded.kind == kind
    assert decoded == record


def test_wire_form_of_a_record() -> None:
    data = as_dict(RECORD_FACTORIES["PostTransaction"]())
    assert data["kind"] == "PostTransaction"
    assert data["schema_version"] == SCHEMA_VERSION == 1
    # Amounts are strings with the storage scale, never JSON numbers.
    assert data["amount"] == "12.5000"
    assert data["fee_amount"] == "0.2500"
    assert data["total_amount"] == "12.7500"
    assert data["transaction_type"] == "TRANSFER"
    assert data["source_wallet_id"] == str(SOURCE)
    assert data["requested_at"] == "2024-05-01T12:00:00.123456Z"
    assert data["metadata"] == {
        "channel": "web",
        "terminal_id": "T-9",
        "n": 3,
        "ok": True,
        "x": None,
    }
    uuid.UUID(data["event_id"])


def test_amounts_decode_exactly() -> None:
    data = as_dict(RECORD_FACTORIES["TransactionRequested"]())
    data.update(amount="0.1", fee_amount="0.2", total_amount="0.3")
    decoded = decode_requested(as_bytes(data))
    assert decoded.amount + decoded.fee_amount == decoded.total_amount == Decimal("0.3")
    assert str(decoded.total_amount) == "0.3000"


def test_posted_defaults_to_completed_and_failed_to_failed() -> None:
    assert RECORD_FACTORIES["TransactionPosted"]().transaction_status is TransactionStatus.COMPLETED
    assert RECORD_FACTORIES["TransactionFailed"]().transaction_status is TransactionStatus.FAILED


def test_event_ids_are_unique_per_record() -> None:
    ids = {TransactionRequested(**facts()).event_id for _ in range(50)}
    assert len(ids) == 50


def test_records_are_frozen() -> None:
    record = RECORD_FACTORIES["TransactionRequested"]()
    with pytest.raises(Exception) as caught:
        record.amount = Decimal("1")  # type: ignore[misc]
    assert "frozen" in str(caught.value).lower()


# --- decoding refuses what does not fit ----------------------------------------------------


@pytest.mark.parametrize("field", ["amount", "fee_amount", "total_amount"])
@pytest.mark.parametrize("number", [12.5, 12, 0])
def test_decode_rejects_amounts_sent_as_json_numbers(field: str, number: float) -> None:
    data = as_dict(RECORD_FACTORIES["TransactionRequested"]())
    data[field] = number
    with pytest.raises(RecordDecodeError) as caught:
        decode_requested(as_bytes(data))
    assert caught.value.message.startswith(f"{field}:")
    assert "decimal strings" in caught.value.message
    assert caught.value.code == "UNDECODABLE_RECORD"


def test_wallet_credited_rejects_a_numeric_amount() -> None:
    data = as_dict(RECORD_FACTORIES["WalletCredited"]())
    data["amount"] = 12.5
    with pytest.raises(RecordDecodeError) as caught:
        decode_wallet_credited(as_bytes(data))
    assert caught.value.message.startswith("amount:")


@pytest.mark.parametrize("text", ["abc", "NaN", "Infinity", "1e30"])
@pytest.mark.parametrize(
    "decoder", [decode_requested, decode_ledger_input, decode_transaction_record]
)
def test_decode_rejects_a_non_decimal_amount_string_as_record_decode_error(
    text: str, decoder: Callable[[bytes | None], Record]
) -> None:
    # The writer and the analytics sink dead-letter only RecordDecodeError: any other
    # exception out of a decoder stops them on a poison record.
    kind = "PostTransaction" if decoder is decode_ledger_input else "TransactionRequested"
    data = as_dict(RECORD_FACTORIES[kind]())
    data["amount"] = text
    with pytest.raises(RecordDecodeError) as caught:
        decoder(as_bytes(data))
    assert "amount" in caught.value.message


@pytest.mark.parametrize("kind", list(RECORD_FACTORIES))
def test_decode_rejects_unknown_fields(kind: str) -> None:
    data = as_dict(RECORD_FACTORIES[kind]())
    data["surprise"] = "x"
    with pytest.raises(RecordDecodeError) as caught:
        DECODERS[kind](as_bytes(data))
    assert "surprise" in caught.value.message
    assert "Extra inputs are not permitted" in caught.value.message


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("TransactionRequested", "transaction_id"),
        ("TransactionRequested", "client_id"),
        ("TransactionRequested", "amount"),
        ("TransactionRequested", "requested_at"),
        ("PostTransaction", "decided_at"),
        ("TransactionRejected", "reason_code"),
        ("TransactionPosted", "completed_at"),
        ("TransactionFailed", "failed_at"),
        ("DuplicateDiscarded", "discarded_at"),
        ("WalletCredited", "wallet_id"),
    ],
)
def test_decode_rejects_missing_fields(kind: str, field: str) -> None:
    data = as_dict(RECORD_FACTORIES[kind]())
    del data[field]
    with pytest.raises(RecordDecodeError) as caught:
        DECODERS[kind](as_bytes(data))
    assert field in caught.value.message
    assert "Field required" in caught.value.message


@pytest.mark.parametrize("version", [0, 2, "1", None])
@pytest.mark.parametrize("kind", ["TransactionRequested", "PostTransaction", "WalletCredited"])
def test_decode_rejects_wrong_schema_version(kind: str, version: object) -> None:
    data = as_dict(RECORD_FACTORIES[kind]())
    data["schema_version"] = version
    with pytest.raises(RecordDecodeError) as caught:
        DECODERS[kind](as_bytes(data))
    assert "schema_version" in caught.value.message


@pytest.mark.parametrize("payload", [b"", b"garbage", b"\xff\xfe\x00", b"[]", b"null", b"{}"])
@pytest.mark.parametrize("decoder", ALL_DECODERS)
def test_decode_rejects_garbage(payload: bytes, decoder: Callable[[bytes | None], Record]) -> None:
    with pytest.raises(RecordDecodeError) as caught:
        decoder(payload)
    assert caught.value.message


@pytest.mark.parametrize("decoder", ALL_DECODERS)
def test_decode_rejects_none(decoder: Callable[[bytes | None], Record]) -> None:
    with pytest.raises(RecordDecodeError) as caught:
        decoder(None)
    assert caught.value.message == "record has no value"


def test_decode_names_the_field_of_a_bad_value() -> None:
    data = as_dict(RECORD_FACTORIES["PostTransaction"]())
    data["currency_code"] = "US"
    with pytest.raises(RecordDecodeError) as caught:
        decode_ledger_input(as_bytes(data))
    assert caught.value.message.startswith("PostTransaction.currency_code:")

    data = as_dict(RECORD_FACTORIES["TransactionRequested"]())
    data["source_wallet_id"] = "not-a-uuid"
    with pytest.raises(RecordDecodeError) as caught:
        decode_requested(as_bytes(data))
    assert caught.value.message.startswith("source_wallet_id:")


def test_decode_rejects_unknown_or_missing_kind() -> None:
    data = as_dict(RECORD_FACTORIES["TransactionPosted"]())
    data["kind"] = "TransactionTeleported"
    with pytest.raises(RecordDecodeError) as caught:
        decode_transaction_record(as_bytes(data))
    assert "TransactionTeleported" in caught.value.message
    del data["kind"]
    with pytest.raises(RecordDecodeError) as caught:
        decode_transaction_record(as_bytes(data))
    assert "kind" in caught.value.message


@pytest.mark.parametrize(
    ("decoder", "kind"),
    [
        (decode_ledger_input, "TransactionPosted"),
        (decode_ledger_input, "TransactionRequested"),
        (decode_ledger_event, "PostTransaction"),
        (decode_ledger_event, "TransactionRejected"),
        (decode_requested, "PostTransaction"),
        (decode_transaction_record, "WalletCredited"),
    ],
)
def test_decoders_refuse_records_of_another_topic(
    decoder: Callable[[bytes | None], Record], kind: str
) -> None:
    with pytest.raises(RecordDecodeError):
        decoder(encode(RECORD_FACTORIES[kind]()))


# --- facts and keys ------------------------------------------------------------------------


def test_facts_exclude_record_identity() -> None:
    request = RECORD_FACTORIES["TransactionRequested"]()
    shared = request.facts()
    assert "event_id" not in shared
    assert "schema_version" not in shared
    assert "kind" not in shared
    assert set(shared) == set(TransactionFacts.model_fields) - {"event_id", "schema_version"}
    assert shared["amount"] == Decimal("12.5")
    assert shared["transaction_id"] == request.transaction_id


@pytest.mark.parametrize("kind", TRANSACTION_KINDS)
def test_a_derived_record_gets_a_new_event_id(kind: str) -> None:
    original = RECORD_FACTORIES[kind]()
    derived = TransactionPosted(**original.facts(), completed_at=T1)
    assert derived.event_id != original.event_id
    assert derived.transaction_id == original.transaction_id
    assert derived.facts() == original.facts()


@pytest.mark.parametrize(
    ("transaction_type", "source", "destination", "key"),
    [
        (TransactionType.TRANSFER, SOURCE, DESTINATION, SOURCE),
        (TransactionType.WITHDRAWAL, SOURCE, None, SOURCE),
        (TransactionType.PAYMENT, SOURCE, None, SOURCE),
        (TransactionType.DEPOSIT, None, DESTINATION, DESTINATION),
    ],
)
def test_partition_key(
    transaction_type: TransactionType,
    source: uuid.UUID | None,
    destination: uuid.UUID | None,
    key: uuid.UUID,
) -> None:
    record = TransactionRequested(
        **facts(
            transaction_type=transaction_type,
            source_wallet_id=source,
            destination_wallet_id=destination,
        )
    )
    assert record.partition_key == str(key).encode()
    # Every record of the transaction keeps the key of the request.
    assert PostTransaction(**record.facts(), decided_at=T1).partition_key == record.partition_key


def test_utc_now_is_aware_utc() -> None:
    now = utc_now()
    assert now.tzinfo is not None
    assert now.utcoffset().total_seconds() == 0  # type: ignore[union-attr]

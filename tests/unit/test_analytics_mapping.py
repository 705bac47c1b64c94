"""analytics.mapping: one pipeline record becomes one ``pipeline_events`` row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from analytics.clickhouse import EVENT_COLUMNS
from analytics.mapping import event_row
from domain.records import (
    DuplicateDiscarded,
    PostTransaction,
    TransactionFailed,
    TransactionPosted,
    TransactionRecord,
    TransactionRejected,
    TransactionRequested,
    decode_transaction_record,
    encode,
)
from domain.transactions import TransactionType

REQUESTED_AT = datetime(2024, 6, 1, 9, 0, 0, tzinfo=UTC)
DECIDED_AT = datetime(2024, 6, 1, 9, 0, 1, tzinfo=UTC)
DONE_AT = datetime(2024, 6, 1, 9, 0, 2, tzinfo=UTC)
SOURCE = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
DESTINATION = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
SOURCE_USER = uuid.UUID("11111111-0000-4000-8000-000000000001")
DESTINATION_USER = uuid.UUID("22222222-0000-4000-8000-000000000002")
CLIENT = uuid.UUID("cccccccc-0000-4000-8000-000000000003")
TRANSACTION = uuid.UUID("eeeeeeee-0000-4000-8000-000000000004")


def facts(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "transaction_id": TRANSACTION,
        "transaction_type": TransactionType.TRANSFER,
        "source_wallet_id": SOURCE,
        "destination_wallet_id": DESTINATION,
        "source_user_id": SOURCE_USER,
        "destination_user_id": DESTINATION_USER,
        "amount": Decimal("12.5000"),
        "fee_amount": Decimal("0.2500"),
        "total_amount": Decimal("12.7500"),
        "currency_code": "USD",
        "client_id": CLIENT,
        "idempotency_key": "k",
        "metadata": {"channel": "pos", "terminal_id": "T-42", "device_id": "d"},
        "requested_at": REQUESTED_AT,
    }
    base.update(overrides)
    return base


def col(row: list[Any], name: str) -> Any:
    return row[EVENT_COLUMNS.index(name)]


CASES: list[tuple[TransactionRecord, str, str, datetime, str, float | None]] = [
    (TransactionRequested(**facts()), "requested", "PENDING", REQUESTED_AT, "", None),
    (
        PostTransaction(**facts(), risk_score=Decimal("0.75"), decided_at=DECIDED_AT),
        "approved",
        "PENDING",
        DECIDED_AT,
        "",
        0.75,
    ),
    (
        TransactionRejected(
            **facts(),
            reason_code="INSUFFICIENT_FUNDS",
            reason_message="no",
            risk_score=Decimal("0.5"),
            decided_at=DECIDED_AT,
        ),
        "rejected",
        "FAILED",
        DECIDED_AT,
        "INSUFFICIENT_FUNDS",
        0.5,
    ),
    (
        TransactionPosted(**facts(), risk_score=Decimal("0.25"), completed_at=DONE_AT),
        "posted",
        "COMPLETED",
        DONE_AT,
        "",
        0.25,
    ),
    (
        TransactionFailed(
            **facts(), reason_code="WALLET_NOT_ACTIVE", reason_message="closed", failed_at=DONE_AT
        ),
        "failed",
        "FAILED",
        DONE_AT,
        "WALLET_NOT_ACTIVE",
        None,
    ),
    (
        DuplicateDiscarded(**facts(), discarded_at=DONE_AT),
        "duplicate_discarded",
        "",
        DONE_AT,
        "",
        None,
    ),
]


@pytest.mark.parametrize(
    ("record", "kind", "status", "when", "reason", "score"),
    CASES,
    ids=[case[1] for case in CASES],
)
def test_event_row(
    record: TransactionRecord,
    kind: str,
    status: str,
    when: datetime,
    reason: str,
    score: float | None,
) -> None:
    row = event_row(record)
    assert len(row) == len(EVENT_COLUMNS) == 20
    assert dict(zip(EVENT_COLUMNS, row, strict=True)) == {
        "event_id": record.event_id,
        "event_kind": kind,
        "event_time": when,
        "transaction_id": TRANSACTION,
        "transaction_type": "TRANSFER",
        "transaction_status": status,
        "source_wallet_id": SOURCE,
        "destination_wallet_id": DESTINATION,
        "source_user_id": SOURCE_USER,
        "destination_user_id": DESTINATION_USER,
        "amount": Decimal("12.5"),
        "fee_amount": Decimal("0.25"),
        "total_amount": Decimal("12.75"),
        "currency_code": "USD",
        "reason_code": reason,
        "risk_score": score,
        "requested_at": REQUESTED_AT,
        "channel": "pos",
        "terminal_id": "T-42",
        "client_id": CLIENT,
    }
    assert isinstance(col(row, "risk_score"), float | None)


@pytest.mark.parametrize("record", [case[0] for case in CASES], ids=[c[1] for c in CASES])
def test_event_row_of_a_decoded_record_is_the_same(record: TransactionRecord) -> None:
    # The sink maps what it decodes from the topic: the wire trip must not change the row.
    assert event_row(decode_transaction_record(encode(record))) == event_row(record)


def test_missing_channel_facts_become_empty_strings() -> None:
    row = event_row(TransactionRequested(**facts(metadata={})))
    assert (col(row, "channel"), col(row, "terminal_id")) == ("", "")
    row = event_row(TransactionRequested(**facts(metadata={"channel": None, "terminal_id": 7})))
    assert (col(row, "channel"), col(row, "terminal_id")) == ("", "7")


def test_deposit_row_has_no_source() -> None:
    record = TransactionPosted(
        **facts(
            transaction_type=TransactionType.DEPOSIT,
            source_wallet_id=None,
            source_user_id=None,
        ),
        completed_at=DONE_AT,
    )
    row = event_row(record)
    assert col(row, "transaction_type") == "DEPOSIT"
    assert col(row, "source_wallet_id") is None
    assert col(row, "source_user_id") is None
    assert col(row, "destination_wallet_id") == DESTINATION
    assert col(row, "risk_score") is None


def test_every_transaction_record_kind_is_mapped() -> None:
    kinds = {case[0].kind for case in CASES}
    assert kinds == {
        "TransactionRequested",
        "PostTransaction",
        "TransactionRejected",
        "TransactionPosted",
        "TransactionFailed",
        "DuplicateDiscarded",
    }
    assert len({case[1] for case in CASES}) == len(CASES)  # distinct event kinds

"""analytics.mapping: one pipeline record becomes one ``pipeline_events`` row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from analytics.clickhouse import EVENT_COLUMNS, events_batch
from analytics.mapping import event_row, row_from_json
from domain.exceptions import RecordDecodeError
from domain.records import (
    DuplicateDiscarded,
    PostTransaction,
    ReviewRequested,
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
    assert len(row) == len(EVENT_COLUMNS) == 22
    assert dict(zip(EVENT_COLUMNS, row, strict=True)) == {
        "event_id": str(record.event_id),
        "event_kind": kind,
        "event_time": when.isoformat(),
        "transaction_id": str(TRANSACTION),
        "transaction_type": "TRANSFER",
        "transaction_status": status,
        "source_wallet_id": str(SOURCE),
        "destination_wallet_id": str(DESTINATION),
        "source_user_id": str(SOURCE_USER),
        "destination_user_id": str(DESTINATION_USER),
        "amount": "12.5000",
        "fee_amount": "0.2500",
        "total_amount": "12.7500",
        "currency_code": "USD",
        "reason_code": reason,
        "risk_score": score,
        "requested_at": REQUESTED_AT.isoformat(),
        "channel": "pos",
        "terminal_id": "T-42",
        "client_id": str(CLIENT),
        "scored_by": "",
        "shadow_scores": [],
    }
    assert isinstance(col(row, "risk_score"), float | None)
    # What the table gets: times to the millisecond in UTC, amounts exact.
    [stored] = events_batch([row]).table.to_pylist()
    assert stored["event_time"] == when and stored["amount"] == Decimal("12.5000")


@pytest.mark.parametrize("record", [case[0] for case in CASES], ids=[c[1] for c in CASES])
def test_the_sink_maps_the_json_as_the_decoded_record_maps(record: TransactionRecord) -> None:
    # The sink reads the JSON itself (no pydantic): the table must be the same as from the
    # decoded record, field by field.
    from_json = events_batch([row_from_json("ledger.events", encode(record))])
    decoded = events_batch([event_row(decode_transaction_record(encode(record)))])
    assert from_json.rejected == decoded.rejected == {}
    assert from_json.table.to_pylist() == decoded.table.to_pylist()


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
    assert col(row, "destination_wallet_id") == str(DESTINATION)
    assert col(row, "risk_score") is None
    assert row_from_json("ledger.events", encode(record))[6:10] == row[6:10]


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


def stored(row: tuple[Any, ...]) -> dict[str, Any]:
    """The row as the table gets it (times parsed, amounts exact)."""
    batch = events_batch([row])
    assert batch.rejected == {}
    return batch.table.to_pylist()[0]


def scored_decision(**overrides: Any) -> PostTransaction:
    values: dict[str, Any] = {
        **facts(),
        "risk_score": Decimal("61.25"),
        "decided_at": DECIDED_AT,
        "scored_by": "fraud-gbm v3",
        "shadow_scores": {"fraud-gbm v4": Decimal("58.50"), "rules v1": Decimal("100")},
    }
    values.update(overrides)
    return PostTransaction(**values)


def test_a_decision_keeps_the_model_that_decided_and_the_challengers_scores() -> None:
    record = scored_decision()
    row = row_from_json("ledger.commands", encode(record))
    assert col(row, "scored_by") == "fraud-gbm v3" and col(row, "risk_score") == 61.25
    assert col(row, "shadow_scores") == [("fraud-gbm v4", 58.5), ("rules v1", 100.0)]
    assert stored(row) == stored(event_row(record))
    assert stored(row)["shadow_scores"] == [("fraud-gbm v4", 58.5), ("rules v1", 100.0)]


def test_a_decision_from_before_models_were_named_has_neither() -> None:
    record = scored_decision(scored_by=None, shadow_scores={})
    row = row_from_json("ledger.commands", encode(record))
    assert (col(row, "scored_by"), col(row, "shadow_scores")) == ("", [])
    legacy = orjson.loads(encode(record))
    del legacy["scored_by"], legacy["shadow_scores"]  # a record written before the fields
    assert row_from_json("ledger.commands", orjson.dumps(legacy)) == row


def test_a_review_request_maps_only_from_its_own_topic() -> None:
    review = ReviewRequested(
        **facts(),
        risk_score=Decimal("72.50"),
        decided_at=DECIDED_AT,
        review_deadline=DONE_AT,
        scored_by="fraud-gbm v3",
    )
    row = row_from_json("reviews.requested", encode(review))
    assert (col(row, "event_kind"), col(row, "scored_by")) == ("review", "fraud-gbm v3")
    with pytest.raises(RecordDecodeError, match="kind: 'ReviewRequested' is not one of"):
        row_from_json("ledger.events", encode(review))
    posted = TransactionPosted(**facts(), completed_at=DONE_AT)
    with pytest.raises(RecordDecodeError, match="kind: 'TransactionPosted' is not one of"):
        row_from_json("reviews.requested", encode(posted))


def test_a_two_phase_posting_from_json_counts_what_was_captured() -> None:
    posted = TransactionPosted(
        **facts(amount=Decimal("100"), fee_amount=Decimal("1"), total_amount=Decimal("101")),
        completed_at=DONE_AT,
        captured_amount=Decimal("60"),
    )
    row = row_from_json("ledger.events", encode(posted))
    assert (col(row, "amount"), col(row, "total_amount")) == ("60.0000", "61.0000")
    assert stored(row) == stored(event_row(posted))


def with_field(record: Any, **changes: Any) -> bytes:
    """The record's JSON with fields replaced (None-valued: removed)."""
    body = orjson.loads(encode(record))
    for name, value in changes.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return orjson.dumps(body)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "record has no value"),
        (b"{not json", "record: invalid JSON"),
        (b"[1, 2]", "record: not a JSON object"),
        (with_field(scored_decision(), kind="Nope"), "kind: 'Nope' is not one of"),
        (with_field(scored_decision(), schema_version=2), "schema_version: must be 1"),
        (with_field(scored_decision(), risk_score="high"), "risk_score: 'high' is not a number"),
        (with_field(scored_decision(), risk_score="NaN"), "risk_score: 'NaN' is not a finite"),
        (with_field(scored_decision(), scored_by="x" * 101), "scored_by: not a model name"),
        (with_field(scored_decision(), shadow_scores={"m": "101"}), "shadow_scores.m: '101' is"),
        (with_field(scored_decision(), shadow_scores=[1]), "shadow_scores: must be an object"),
        (
            with_field(scored_decision(), shadow_scores={f"m{i}": "1" for i in range(9)}),
            "shadow_scores: more than 8 models",
        ),
        (with_field(scored_decision(), metadata=[1]), "metadata: must be an object"),
        (with_field(scored_decision(), metadata={"channel": {"a": 1}}), "metadata.channel: must"),
    ],
    ids=lambda value: value[:24] if isinstance(value, str) else None,
)
def test_a_record_that_cannot_be_mapped_says_why(payload: bytes | None, reason: str) -> None:
    with pytest.raises(RecordDecodeError) as raised:
        row_from_json("ledger.commands", payload)
    assert raised.value.message.startswith(reason)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"event_id": "not-a-uuid"}, "event_id: 'not-a-uuid': not a UUID"),
        ({"transaction_id": None}, "transaction_id: None: field required"),
        ({"client_id": 7}, "client_id: 7:"),
        ({"source_wallet_id": "aaaaaaaa-0000-4000-8000-00000000000z"}, "source_wallet_id: "),
        ({"decided_at": "2024-06-01T09:00:01"}, "event_time: '2024-06-01T09:00:01': "),
        ({"requested_at": "yesterday"}, "requested_at: 'yesterday': "),
        ({"amount": "12.34567"}, "amount: '12.34567': "),
        ({"amount": 12.5}, "amount: 12.5: "),
        ({"fee_amount": "-0.0100"}, "fee_amount: '-0.0100': a negative amount"),
        ({"total_amount": "1234567890123456"}, "total_amount: '1234567890123456': "),
        ({"transaction_type": "GIFT"}, "transaction_type: 'GIFT': not a transaction type"),
        ({"currency_code": "EURO"}, "currency_code: 'EURO': not a 3-letter currency code"),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
)
def test_a_row_whose_values_do_not_convert_is_left_out_with_the_reason(
    changes: dict[str, Any], reason: str
) -> None:
    good = [row_from_json("ledger.commands", encode(scored_decision())) for _ in range(5)]
    bad = row_from_json("ledger.commands", with_field(scored_decision(), **changes))
    batch = events_batch([*good[:2], bad, *good[2:]])
    assert list(batch.rejected) == [2]
    assert batch.rejected[2].startswith(reason), batch.rejected[2]
    assert batch.table.column("event_id").to_pylist() == [col(r, "event_id") for r in good]


def test_a_rejection_without_its_reason_code_is_left_out() -> None:
    rejected = CASES[2][0]
    batch = events_batch([row_from_json("ledger.commands", with_field(rejected, reason_code=None))])
    assert batch.rejected == {0: "reason_code: None: field required"}
    assert batch.table.num_rows == 0


def test_ids_are_stored_in_lower_case() -> None:
    body = with_field(scored_decision(), event_id="AAAAAAAA-0000-4000-8000-0000000000FF")
    batch = events_batch([row_from_json("ledger.commands", body)])
    assert batch.table.column("event_id").to_pylist() == ["aaaaaaaa-0000-4000-8000-0000000000ff"]

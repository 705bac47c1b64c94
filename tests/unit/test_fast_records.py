"""The ledger's fast record paths give exactly what pydantic gives (domain/fast_records.py).

Decoding: the same model (fields, fields set) for every record our producers write, the
same result through pydantic for other spellings, the same RecordDecodeError message for
bad records. Encoding: the same bytes as ``model_dump_json``. Ids: ``TextUUID`` is a UUID.
"""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from domain import fast_records, records
from domain.exceptions import RecordDecodeError
from domain.ids import TextUUID, next_row_id, parse_canonical, row_ids, uuid_array, with_text
from domain.transactions import TransactionStatus, TransactionType
from ledger_writer.book import posted_event

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
ODD_TEXT = 'tab\there\nnewline "quote" back\\slash \u2028 \u0001 é 😀 </script>'


def post(**changes: object) -> records.PostTransaction:
    values: dict = {
        "transaction_id": uuid.uuid4(),
        "transaction_type": TransactionType.TRANSFER,
        "source_wallet_id": uuid.uuid4(),
        "destination_wallet_id": uuid.uuid4(),
        "amount": Decimal("12.34"),
        "fee_amount": Decimal("0"),
        "total_amount": Decimal("12.34"),
        "currency_code": "USD",
        "client_id": uuid.uuid4(),
        "idempotency_key": "key-1",
        "requested_at": NOW,
        "decided_at": NOW + timedelta(milliseconds=3),
    }
    values.update(changes)
    return records.PostTransaction(**values)


VARIANTS = [
    {},
    {"fee_amount": Decimal("1.50"), "total_amount": Decimal("13.84")},
    {"transaction_type": TransactionType.DEPOSIT, "source_wallet_id": None},
    {"transaction_type": TransactionType.WITHDRAWAL, "destination_wallet_id": None},
    {"source_user_id": uuid.uuid4(), "destination_user_id": uuid.uuid4()},
    {"description": ODD_TEXT, "ip_address": "10.0.0.1", "user_agent": ODD_TEXT},
    {"metadata": {"channel": "POS", "n": 7, "flag": True, "none": None, "odd": ODD_TEXT}},
    {"metadata": {"reversal_of": str(uuid.uuid4())}},
    {"risk_score": Decimal("42.50"), "scored_by": "forest v3"},
    {"risk_score": Decimal("0")},
    {"amount": Decimal("999999999999999.9999"), "total_amount": Decimal("999999999999999.9999")},
    {"requested_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))},
    {"requested_at": NOW.replace(microsecond=0), "decided_at": NOW.replace(microsecond=7)},
]


def same_model(fast: records.Record, slow: records.Record) -> None:
    assert type(fast) is type(slow)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json() == slow.model_dump_json()


@pytest.mark.parametrize("changes", VARIANTS)
def test_a_plain_command_decodes_as_pydantic_decodes_it_on_the_fast_path(changes) -> None:
    payload = records.encode(post(**changes))
    fast = fast_records.decode_ledger_input(payload)
    same_model(fast, records.decode_ledger_input(payload))
    assert type(fast.transaction_id) is TextUUID  # the fast path took it
    assert str(fast.client_id) == orjson.loads(payload)["client_id"]


def test_a_rejection_decodes_as_pydantic_decodes_it() -> None:
    rejected = records.TransactionRejected(
        **post().facts(),
        reason_code="LIMIT_EXCEEDED",
        reason_message=ODD_TEXT,
        decided_at=NOW,
    )
    payload = records.encode(rejected)
    fast = fast_records.decode_ledger_input(payload)
    same_model(fast, records.decode_ledger_input(payload))
    assert type(fast.transaction_id) is TextUUID


def respelled(**changes: object) -> bytes:
    raw = orjson.loads(records.encode(post()))
    raw.update(changes)
    return orjson.dumps(raw)


OTHER_SPELLINGS = [
    respelled(transaction_id=str(uuid.uuid4()).upper()),
    respelled(source_wallet_id=uuid.uuid4().hex),
    respelled(amount="12.34"),
    respelled(metadata={"weight": 1.0}),
    respelled(shadow_scores={"forest v2": "40.00"}),
    respelled(risk_score="4.2E+1"),
    respelled(requested_at="2026-12-01T12:00:00.1234567Z"),
    respelled(schema_version=1.0),
    b" " + records.encode(post()) + b"\n",
]


@pytest.mark.parametrize("payload", OTHER_SPELLINGS)
def test_other_spellings_get_what_pydantic_makes_of_them(payload: bytes) -> None:
    same_model(fast_records.decode_ledger_input(payload), records.decode_ledger_input(payload))


def test_a_record_without_event_id_gets_a_fresh_one_either_way() -> None:
    raw = orjson.loads(records.encode(post()))
    del raw["event_id"]
    payload = orjson.dumps(raw)
    fast, slow = fast_records.decode_ledger_input(payload), records.decode_ledger_input(payload)
    assert fast.model_dump(exclude={"event_id"}) == slow.model_dump(exclude={"event_id"})
    assert fast.model_fields_set == slow.model_fields_set


def without(name: str) -> bytes:
    raw = orjson.loads(records.encode(post()))
    del raw[name]
    return orjson.dumps(raw)


BAD = [
    None,
    b"",
    b"not json",
    b"[1, 2]",
    respelled(kind="SomethingElse"),
    respelled(unexpected="field"),
    respelled(amount=12.34),
    respelled(amount="12.34567"),
    respelled(amount="-1.0000"),
    respelled(amount="1000000000000000.0000"),
    respelled(transaction_id="not-a-uuid"),
    respelled(transaction_type="REFUND"),
    respelled(currency_code="DOLLARS"),
    respelled(idempotency_key="k" * 256),
    respelled(description=7),
    respelled(metadata={str(i): i for i in range(33)}),
    respelled(metadata={"nested": {"a": 1}}),
    respelled(requested_at="2026-02-30T12:00:00Z"),
    respelled(requested_at="yesterday"),
    respelled(schema_version=2),
    respelled(scored_by=""),
    without("transaction_id"),
    without("decided_at"),
    without("kind"),
]


@pytest.mark.parametrize("payload", BAD)
def test_a_bad_record_is_refused_with_pydantics_own_message(payload: bytes | None) -> None:
    with pytest.raises(RecordDecodeError) as slow:
        records.decode_ledger_input(payload)
    with pytest.raises(RecordDecodeError) as fast:
        fast_records.decode_ledger_input(payload)
    assert fast.value.message == slow.value.message


@pytest.mark.parametrize("changes", VARIANTS)
@pytest.mark.parametrize("captured", [None, Decimal("5.5")])
def test_a_posted_event_encodes_byte_for_byte_as_pydantic(changes, captured, monkeypatch) -> None:
    command = fast_records.decode_ledger_input(records.encode(post(**changes)))
    event = posted_event(command, NOW + timedelta(seconds=1), captured_amount=captured)
    expected = event.model_dump_json().encode()

    def no_fallback(record: records.Record) -> bytes:
        raise AssertionError("the fast encoder handed a plain TransactionPosted to pydantic")

    monkeypatch.setattr(records, "encode", no_fallback)
    assert fast_records.encode(event) == expected
    assert records.decode_ledger_event(fast_records.encode(event)) == event


@pytest.mark.filterwarnings("ignore::UserWarning")  # the odd str status, on purpose
def test_other_records_and_odd_values_encode_through_pydantic() -> None:
    command = post()
    assert fast_records.encode(command) == records.encode(command)
    posted = records.TransactionPosted(
        **command.facts(), completed_at=NOW, transaction_status=TransactionStatus.REVERSED
    )
    assert fast_records.encode(posted) == records.encode(posted)
    odd = posted.model_copy(update={"transaction_status": "COMPLETED"})  # a str, not the enum
    assert fast_records.encode(odd) == records.encode(odd)


def test_a_text_uuid_is_a_uuid() -> None:
    plain = uuid.uuid4()
    text = parse_canonical(str(plain))
    assert text is not None
    assert text == plain and plain == text and hash(text) == hash(plain)
    assert {plain: 1}[text] == 1
    assert str(text) == str(plain) and text.hex == plain.hex and text.bytes == plain.bytes
    assert pickle.loads(pickle.dumps(text)) == plain
    assert with_text(plain) == plain and str(with_text(plain)) == str(plain)
    assert uuid_array([text, plain]) == f"{{{plain},{plain}}}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
        "a0eebc99-9c0b-4ef8-bb6d_6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd38_a11",
        " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1\u0663",
    ],
)
def test_only_the_canonical_spelling_parses(text: str) -> None:
    assert parse_canonical(text) is None


def test_row_ids_are_unique_ordered_uuids_with_their_text() -> None:
    made = [next_row_id() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert made == sorted(made, key=lambda u: u.int)
    assert all(uuid.UUID(str(u)) == u and u.version == 7 for u in made)
    fresh = row_ids()
    assert next(fresh) != next(fresh)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"risk_score": Decimal("12.50"), "scored_by": "fraud v3"},
        {"shadow_scores": {"fraud v4": Decimal("7.25")}, "scored_by": "fraud v3"},
    ],
)
def test_an_approval_encodes_byte_for_byte_as_pydantic(changes: dict) -> None:
    command = post(**changes).model_copy(
        update={"expires_at": datetime(2026, 3, 5, 12, 10, 0, 123456, tzinfo=UTC)}
    )
    assert fast_records.encode(command) == command.model_dump_json().encode()
    assert fast_records.decode_ledger_input(fast_records.encode(command)) == command

"""The native record decoder (``sink_decoder``, through ``analytics.mapping.NativeDecoder``)
against the reference, ``row_from_json``: same table, same rejections, same reasons, on
every record kind and on a corpus of mutated records, and it really takes the well-formed
records (a decoder that left everything to Python would pass the equality alone)."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal
from typing import Any

import orjson
import pytest

from analytics.clickhouse import (
    NATIVE_DECODER,
    RECORDS_PER_CHUNK,
    EventsBatch,
    EventsBatchBuilder,
)
from domain.records import ReviewRequested, TransactionPosted, encode
from tests.unit.test_analytics_mapping import CASES, DECIDED_AT, DONE_AT, facts, scored_decision

TOPICS = ("ledger.commands", "ledger.events", "transactions.rejected", "reviews.requested")


def well_formed() -> list[tuple[str, bytes]]:
    """One record of every kind, as the pipeline writes it, with the topic it is read from."""
    review = ReviewRequested(
        **facts(),
        risk_score=Decimal("72.50"),
        decided_at=DECIDED_AT,
        review_deadline=DONE_AT,
        scored_by="fraud-gbm v3",
        shadow_scores={"fraud-gbm v4": Decimal("70.25")},
    )
    captured = TransactionPosted(**facts(), completed_at=DONE_AT, captured_amount=Decimal("12.5"))
    out = [("ledger.events", encode(case[0])) for case in CASES]
    out += [("ledger.commands", encode(scored_decision())), ("reviews.requested", encode(review))]
    out += [("ledger.events", encode(captured))]
    return out


def batch(pairs: list[tuple[str | None, bytes | None]], native: bool) -> EventsBatch:
    builder = EventsBatchBuilder() if native else EventsBatchBuilder(decoder=None)
    for topic, payload in pairs:
        builder.add_record(topic, payload)
    return builder.finish()


def assert_same(pairs: list[tuple[str | None, bytes | None]]) -> EventsBatch:
    native, reference = batch(pairs, native=True), batch(pairs, native=False)
    assert native.table.schema == reference.table.schema
    assert native.table.to_pylist() == reference.table.to_pylist()
    assert native.table.equals(reference.table)
    assert native.rejected == reference.rejected
    assert native.undecodable == reference.undecodable
    return native


def test_every_well_formed_kind_is_taken_natively_and_gives_the_reference_rows() -> None:
    pairs = well_formed()
    left, _columns = NATIVE_DECODER.decode([t for t, _ in pairs], [p for _, p in pairs])
    assert left == []
    done = assert_same(pairs)
    assert done.table.num_rows == len(pairs) and not done.rejected and not done.undecodable


def mutations(record: dict[str, Any]) -> list[bytes]:
    """The record's JSON with one change each: every field removed, null, or of another
    type; texts with escapes; scores spelled the ways Python's float reads and the ways it
    does not; metadata, shadow scores, schema versions and kinds bent; bytes broken."""
    bodies: list[dict[str, Any]] = []
    odd_values = [None, 7, 1.5, True, [], {}, "", 'a"b', "caf\u00e9", "x" * 120]
    for name in record:
        bodies.append({k: v for k, v in record.items() if k != name})
        bodies += [{**record, name: value} for value in odd_values]
    for score in ("1e2", " 5", "5.", ".5", "-0", "100", "100.01", "1_0", "inf", "nan", "07.50"):
        bodies += [{**record, "risk_score": score}, {**record, "shadow_scores": {"m": score}}]
    for scores in ({}, {"": "1"}, {"m" * 101: "1"}, {f"m{i}": "1" for i in range(9)}, {"m": 5}):
        bodies.append({**record, "shadow_scores": scores})
    for metadata in (None, {}, [], {"channel": 5}, {"terminal_id": True}, {"channel": None}):
        bodies.append({**record, "metadata": metadata})
    for version in (None, 1, 1.0, 2, True, "1"):
        bodies.append({**record, "schema_version": version})
    for kind in ("TransactionRequested", "ReviewRequested", "TransactionPosted", "Nope", 3):
        bodies.append({**record, "kind": kind})
    # The column checks' territory: forms the native decoder converts itself, and forms it
    # leaves to them (they read or refuse those, with their reasons).
    for at in (
        "2024-06-01T09:00:01.5Z",
        "2024-06-01T09:00:01.123456Z",
        "2024-06-01T09:00:01.1234567Z",
        "2024-06-01T09:00:01+00:00",
        "2024-06-01T09:00:01",
        "2024-06-01 09:00:01Z",
        "2024-06-01t09:00:01z",
        "2024-02-29T23:59:59.999Z",
        "2023-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-06-01T24:00:00Z",
        "2024-06-01T23:59:60Z",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
    ):
        bodies += [{**record, "requested_at": at}, {**record, field_of_time(record): at}]
    for amount in ("0", "0.5", "00.5", "12.", ".5", "1e3", "12.50000", "12.34567", "-0", "+1",
                   " 1", "999999999999999.9999", "1000000000000000", "１２"):  # fmt: skip
        bodies += [{**record, name: amount} for name in ("amount", "fee_amount", "total_amount")]
    for id_text in (
        "AAAAAAAA-0000-4000-8000-000000000001",
        "aaaaaaaa00004000800000000000000001",
        "aaaaaaaa-0000-4000-8000-00000000000g",
        "{aaaaaaaa-0000-4000-8000-000000000001}",
    ):
        bodies += [{**record, name: id_text} for name in ("event_id", "source_wallet_id")]
    for code in ("EU", "€UR", "usd", "EURO"):
        bodies.append({**record, "currency_code": code})
    for reason in ("R" * 50, "R" * 51, "é" * 50, ""):
        bodies.append({**record, "reason_code": reason})
    for transaction_type in ("transfer", "PAYMENT", "GIFT"):
        bodies.append({**record, "transaction_type": transaction_type})
    bodies.append({**record, "captured_amount": "1.0000"})
    bodies.append({**record, "amount": "12.34567", "captured_amount": "12.34567"})
    out = [orjson.dumps(body) for body in bodies]
    raw = orjson.dumps(record)
    out += [
        raw[:-1] + b',"kind":"TransactionRequested"}',  # a repeated key: the last one counts
        raw[:-1] + b',"kind":"TransactionRequested","kind":"' + record["kind"].encode() + b'"}',
        raw.replace(b'"currency_code":"USD"', b'"currency_code":"U\\u0053D"'),
        raw.replace(b'"T-42"', b'"T\xff42"'),  # not UTF-8
        raw.replace(b'"T-42"', b'"T\\ud80042"'),  # a lone surrogate
        raw.replace(b'"T-42"', b'"T\t42"'),  # a raw control character
        raw + b" ",
        raw + b"x",
        b" \n" + raw,
        raw[: len(raw) // 2],
        b"",
        b"null",
        b"[]",
    ]
    return out


def field_of_time(record: dict[str, Any]) -> str:
    """The field that dates a record of its kind (``analytics.mapping``'s rule)."""
    for name in ("completed_at", "failed_at", "discarded_at", "decided_at"):
        if name in record:
            return name
    return "requested_at"


def corpus() -> list[tuple[str, bytes]]:
    return [
        (topic, payload)
        for (_, good), topic in itertools.product(well_formed(), TOPICS)
        for payload in mutations(orjson.loads(good))
    ]


def test_mutated_records_give_the_reference_rows_and_reasons() -> None:
    pairs = corpus()
    done = assert_same(pairs)
    # The corpus holds records of every outcome: taken, refused by the decoder, left out
    # by a column; and the native decoder took many of them (its own rows were compared).
    assert done.table.num_rows > 1_000 and done.rejected and done.undecodable
    left, _ = NATIVE_DECODER.decode([t for t, _ in pairs], [p for _, p in pairs])
    assert len(pairs) - len(left) > 1_000


def test_mixed_batches_keep_the_order_of_the_records_across_chunks() -> None:
    # Records the native decoder leaves (and the reference decodes) interleave with the
    # ones it takes, over several chunks, repeated event ids included: the batch is the
    # reference's row for row, so the first of two events with one id is still the first.
    pairs = corpus()
    random.Random(7).shuffle(pairs)
    pairs = (pairs * (2 * RECORDS_PER_CHUNK // len(pairs) + 2))[: 2 * RECORDS_PER_CHUNK + 77]
    pairs.insert(5, (None, None))
    assert_same(pairs)


def test_rows_and_records_added_to_one_builder_keep_their_order() -> None:
    from analytics.mapping import row_from_json

    pairs = well_formed()
    mixed, reference = EventsBatchBuilder(), EventsBatchBuilder(decoder=None)
    for index, (topic, payload) in enumerate(pairs):
        for builder in (mixed, reference):
            if index % 2:
                builder.add(row_from_json(topic, payload))
            else:
                builder.add_record(topic, payload)
    assert mixed.finish().table.equals(reference.finish().table)


@pytest.mark.parametrize("payloads", [[b"{}"], [None], []])
def test_the_decoder_reads_any_list_of_payloads(payloads: list[bytes | None]) -> None:
    left, columns = NATIVE_DECODER.decode(["ledger.events"] * len(payloads), payloads)
    assert left == list(range(len(payloads)))
    assert set(columns) >= {"event_id", "risk_score", "shadow_scores"}

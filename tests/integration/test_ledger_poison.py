"""A record the ledger cannot store fails alone, on real PostgreSQL and Kafka: the inputs of
issue 10 (a 100-bit integer in metadata; NUL in the description, a metadata key, a metadata
value, the external reference) put straight onto the writer's topics, as a producer other
than the API could. Each one's transaction FAILS with UNPROCESSABLE_RECORD (a row, a FAILED
event, a TransactionFailed for the stream), the record goes to the dead-letter topic, the
rest of its batch posts, the writer keeps running and ``ledger verify`` passes.

Each case runs twice: with the writer's admission (the bad records are found before the
batch is planned) and without it, where PostgreSQL and the encoders refuse them mid-batch
and the writer must find each one by writing the batch again in parts (``isolation``).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer

from domain import records
from domain.exceptions import LedgerInvariantError
from domain.transactions import TransactionType
from infra.migrate import apply_migrations
from ledger_writer import store
from ledger_writer.kafka_io import producer_config
from ledger_writer.settings import LedgerSettings
from ledger_writer.verify import verify
from ledger_writer.writer import LedgerWriter
from tests.helpers import ordered_producer
from tests.integration.test_ledger_writer import Message, available, command, wallet
from tests.integration.writer_process import (
    count,
    private_topics,
    read_topic,
    start_writer,
    stop,
    wait_until,
    writer_env,
)

pytestmark = pytest.mark.integration

TRANSFER, PAYMENT = TransactionType.TRANSFER, TransactionType.PAYMENT

#: The issue's inputs: what each bad record carries instead of the command's own fields.
ISSUE_INPUTS = {
    "big integer": {"metadata": {"n": 1000000000000000000000000000000}},
    "NUL in description": {"description": "coffee\x00"},
    "NUL in a metadata key": {"metadata": {"chan\x00nel": "POS"}},
    "NUL in a metadata value": {"metadata": {"channel": "P\x00S"}},
    "NUL in external_reference_id": {"metadata": {"external_reference_id": "ref-\x001"}},
}


def payload(record: records.Record, **fields: object) -> bytes:
    """The record as JSON with ``fields`` replaced, written by a plain JSON encoder."""
    body = json.loads(records.encode(record))
    body.update(fields)
    return json.dumps(body).encode()


@pytest.fixture()
def topics(stack: dict) -> dict[str, str]:
    return private_topics(stack["KAFKA_BOOTSTRAP"], f"poison-{uuid.uuid4().hex[:10]}", 1)


@pytest.fixture()
def conn(stack: dict):
    with psycopg.connect(stack["DATABASE_URL"], autocommit=True) as connection:
        store.ensure_system_accounts(connection, datetime.now(UTC))
        yield connection


def make_writer(stack: dict, topics: dict[str, str], *, admission: bool) -> LedgerWriter:
    settings = LedgerSettings(
        DATABASE_URL=stack["DATABASE_URL"],
        KAFKA_BOOTSTRAP=stack["KAFKA_BOOTSTRAP"],
        consumer_group=f"poison-{uuid.uuid4().hex[:8]}",
        commands_topic=topics["LEDGER_COMMANDS_TOPIC"],
        rejected_topic=topics["LEDGER_REJECTED_TOPIC"],
        events_topic=topics["LEDGER_EVENTS_TOPIC"],
        gateway_results_topic=topics["LEDGER_GATEWAY_RESULTS_TOPIC"],
        gateway_requests_topic=topics["LEDGER_GATEWAY_REQUESTS_TOPIC"],
    )
    writer = LedgerWriter(settings)
    if not admission:
        writer.admit = lambda _item: None  # only the database and the encoders judge
    return writer


def statuses(conn: psycopg.Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = conn.execute(
        "SELECT transaction_id, transaction_status FROM transactions"
        " WHERE transaction_id = ANY(%s)",
        (ids,),
    ).fetchall()
    return dict(rows)


def failure_codes(conn: psycopg.Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = conn.execute(
        "SELECT transaction_id, error_code FROM transaction_events"
        " WHERE event_type = 'FAILED' AND transaction_id = ANY(%s)",
        (ids,),
    ).fetchall()
    return dict(rows)


def announced(conn: psycopg.Connection, topic: str) -> dict[uuid.UUID, str]:
    """transaction id → kind of each ledger event in ``topic``'s outbox rows."""
    rows = conn.execute("SELECT payload FROM outbox WHERE topic = %s", (topic,)).fetchall()
    events = [records.decode_ledger_event(bytes(p)) for (p,) in rows]
    return {e.transaction_id: e.kind for e in events}


def dead_letters(stack: dict, topic: str, expected: int) -> dict[bytes, str]:
    """Payload → reason of the dead letters of ``topic``."""
    found = read_topic(stack["KAFKA_BOOTSTRAP"], f"{topic}.dlq", expected)
    return {m.value(): dict(m.headers())["dlq.reason"].decode() for m in found}


def books_balance(stack: dict) -> None:
    failed = [r.name for r in verify(stack["DATABASE_URL"]) if not r.passed]
    assert failed == []


@pytest.mark.parametrize("admission", [True, False], ids=["admitted", "found-mid-batch"])
def test_the_issue_inputs_fail_alone_and_their_batch_posts(stack, conn, topics, admission):
    writer = make_writer(stack, topics, admission=admission)
    commands = topics["LEDGER_COMMANDS_TOPIC"]
    alice, bob = wallet(conn, "100"), wallet(conn)
    good = [command(TRANSFER, alice, bob, "10"), command(TRANSFER, alice, bob, "5")]
    bad = {name: command(TRANSFER, alice, bob, "1") for name in ISSUE_INPUTS}
    payloads = [records.encode(good[0])]
    payloads += [payload(bad[name], **ISSUE_INPUTS[name]) for name in ISSUE_INPUTS]
    payloads.append(records.encode(good[1]))
    batch = [Message(commands, 0, offset, value) for offset, value in enumerate(payloads)]

    writer.process(conn, Producer(producer_config(stack["KAFKA_BOOTSTRAP"])), batch)

    bad_ids = [item.transaction_id for item in bad.values()]
    good_ids = [item.transaction_id for item in good]
    assert statuses(conn, good_ids + bad_ids) == {
        **dict.fromkeys(good_ids, "COMPLETED"),
        **dict.fromkeys(bad_ids, "FAILED"),
    }
    assert failure_codes(conn, bad_ids) == dict.fromkeys(bad_ids, "UNPROCESSABLE_RECORD")
    assert (available(conn, alice), available(conn, bob)) == (Decimal(85), Decimal(15))
    kinds = announced(conn, topics["LEDGER_EVENTS_TOPIC"])
    assert {t: kinds.get(t) for t in bad_ids} == dict.fromkeys(bad_ids, "TransactionFailed")
    assert store.load_offsets(conn, writer.settings.group, commands) == {0: len(payloads)}
    letters = dead_letters(stack, commands, len(bad))
    assert set(letters) == set(payloads[1:-1])  # each bad record, byte for byte
    assert all(reason.startswith("UNPROCESSABLE_RECORD: ") for reason in letters.values())
    assert writer.totals["unprocessable"] == (0 if admission else len(bad))
    books_balance(stack)


@pytest.mark.parametrize("admission", [True, False], ids=["admitted", "found-mid-batch"])
def test_a_bad_rejection_or_gateway_answer_fails_alone_too(stack, conn, topics, admission):
    writer = make_writer(stack, topics, admission=admission)
    producer = Producer(producer_config(stack["KAFKA_BOOTSTRAP"]))
    alice, bob = wallet(conn, "100"), wallet(conn)
    payment = command(PAYMENT, alice, None, "30")
    writer.process(
        conn, producer, [Message(topics["LEDGER_COMMANDS_TOPIC"], 0, 0, records.encode(payment))]
    )
    assert statuses(conn, [payment.transaction_id]) == {payment.transaction_id: "PENDING"}

    declined = records.GatewayResponded(
        transaction_id=payment.transaction_id,
        wallet_id=alice,
        outcome="DECLINED",
        responded_at=records.utc_now(),
    )
    base = command(TransactionType.WITHDRAWAL, alice, None, "7")
    rejected = records.TransactionRejected(
        **base.facts(), reason_code="LIMIT_EXCEEDED", reason_message="x", decided_at=base.decided_at
    )
    transfer = command(TRANSFER, alice, bob, "20")
    bad_answer = payload(declined, reason_message="declined\x00")
    bad_rejection = payload(rejected, reason_message="over the limit\x00")
    batch = [
        Message(topics["LEDGER_GATEWAY_RESULTS_TOPIC"], 0, 0, bad_answer),
        Message(topics["LEDGER_REJECTED_TOPIC"], 0, 0, bad_rejection),
        Message(topics["LEDGER_COMMANDS_TOPIC"], 0, 1, records.encode(transfer)),
    ]
    writer.process(conn, producer, batch)

    ids = [payment.transaction_id, rejected.transaction_id, transfer.transaction_id]
    assert statuses(conn, ids) == dict(zip(ids, ["FAILED", "FAILED", "COMPLETED"], strict=True))
    codes = failure_codes(conn, ids[:2])
    assert codes == dict.fromkeys(ids[:2], "UNPROCESSABLE_RECORD")
    hold = conn.execute(
        "SELECT outcome FROM ledger_holds WHERE transaction_id = %s", (payment.transaction_id,)
    ).fetchone()
    assert hold == ("REFUSED",)  # released: the money is alice's again
    reserved = conn.execute(
        "SELECT reserved_balance FROM wallet_balances WHERE wallet_id = %s", (alice,)
    ).fetchone()
    assert reserved == (Decimal(0),) and available(conn, alice) == Decimal(80)
    assert announced(conn, topics["LEDGER_EVENTS_TOPIC"])[payment.transaction_id] == (
        "TransactionFailed"
    )
    assert set(dead_letters(stack, topics["LEDGER_GATEWAY_RESULTS_TOPIC"], 1)) == {bad_answer}
    assert set(dead_letters(stack, topics["LEDGER_REJECTED_TOPIC"], 1)) == {bad_rejection}
    assert writer.totals["unprocessable"] == (0 if admission else 2)
    books_balance(stack)


def test_the_running_writer_outlives_the_issue_inputs(stack, conn, topics, tmp_path: Path):
    """The real writer process, fed through Kafka: it never stops, and each bad record's
    transaction fails while every other one posts."""
    tag = topics["LEDGER_COMMANDS_TOPIC"].removesuffix(".commands")
    alice, bob = wallet(conn, "1000"), wallet(conn)
    good = [command(TRANSFER, alice, bob, "1") for _ in range(40)]
    bad = {name: command(TRANSFER, alice, bob, "2") for name in ISSUE_INPUTS}
    bad_payloads = {payload(bad[name], **ISSUE_INPUTS[name]) for name in ISSUE_INPUTS}
    producer = ordered_producer(stack["KAFKA_BOOTSTRAP"])
    values = [records.encode(item) for item in good[:20]]
    values += sorted(bad_payloads)
    values += [records.encode(item) for item in good[20:]]
    for value in values:
        producer.produce(topics["LEDGER_COMMANDS_TOPIC"], key=str(alice).encode(), value=value)
    assert producer.flush(30) == 0

    log_path = tmp_path / "writer.log"
    writer = start_writer(writer_env(stack, tag, topics), log_path)
    ids = [i.transaction_id for i in good] + [i.transaction_id for i in bad.values()]
    try:
        wait_until(
            lambda: (
                count(
                    stack["DATABASE_URL"],
                    "SELECT count(*) FROM transactions WHERE transaction_id = ANY(%s)",
                    (ids,),
                )
                == len(ids)
            ),
            120,
            "every transaction recorded",
            writer,
            log_path,
        )
        assert writer.poll() is None, "the writer must still run"
    finally:
        stop(writer)
    bad_ids = [i.transaction_id for i in bad.values()]
    assert statuses(conn, ids) == {
        **{i.transaction_id: "COMPLETED" for i in good},
        **dict.fromkeys(bad_ids, "FAILED"),
    }
    assert failure_codes(conn, bad_ids) == dict.fromkeys(bad_ids, "UNPROCESSABLE_RECORD")
    assert available(conn, bob) == Decimal(40)
    letters = dead_letters(stack, topics["LEDGER_COMMANDS_TOPIC"], len(bad))
    assert set(letters) == bad_payloads
    books_balance(stack)


@pytest.fixture()
def fresh_url(stack: dict):
    """A database of its own: this test drives the external clearing account to the limit
    of DECIMAL(19,4), which would break every later deposit in the shared one."""
    admin_url = stack["DATABASE_URL"]
    name = f"overflow_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_balance_beyond_its_column_fails_that_transaction_alone(stack, topics, fresh_url):
    """No record check can see this one: two deposits, each in range, take a balance past
    DECIMAL(19,4). PostgreSQL refuses the balance mid-batch; the writer finds the deposit
    that overflows and fails it alone."""
    writer = make_writer({**stack, "DATABASE_URL": fresh_url}, topics, admission=True)
    commands = topics["LEDGER_COMMANDS_TOPIC"]
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        store.ensure_system_accounts(conn, datetime.now(UTC))
        rich, poor = wallet(conn), wallet(conn)
        most = command(TransactionType.DEPOSIT, None, rich, "999999999999999")
        more = command(TransactionType.DEPOSIT, None, rich, "1")
        small = command(TransactionType.DEPOSIT, None, poor, "0.01")
        values = [records.encode(item) for item in (most, more, small)]
        batch = [Message(commands, 0, offset, value) for offset, value in enumerate(values)]
        writer.process(conn, Producer(producer_config(stack["KAFKA_BOOTSTRAP"])), batch)
        ids = [item.transaction_id for item in (most, more, small)]
        assert statuses(conn, ids) == dict(
            zip(ids, ["COMPLETED", "FAILED", "COMPLETED"], strict=True)
        )
        assert failure_codes(conn, [more.transaction_id]) == {
            more.transaction_id: "UNPROCESSABLE_RECORD"
        }
        assert available(conn, rich) == Decimal("999999999999999")
        assert available(conn, poor) == Decimal("0.01")  # the clearing account fits one cent
        assert writer.totals["unprocessable"] == 1
    assert [r.name for r in verify(fresh_url) if not r.passed] == []


def test_an_invariant_breach_stops_the_batch_and_is_never_dead_lettered(stack, topics, fresh_url):
    """Corrupted books (a hold larger than its wallet's reserved balance) are not a bad
    record: the batch raises LedgerInvariantError, writes nothing and moves no offset."""
    writer = make_writer({**stack, "DATABASE_URL": fresh_url}, topics, admission=True)
    producer = Producer(producer_config(stack["KAFKA_BOOTSTRAP"]))
    commands = topics["LEDGER_COMMANDS_TOPIC"]
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        store.ensure_system_accounts(conn, datetime.now(UTC))
        alice = wallet(conn, "50")
        payment = command(PAYMENT, alice, None, "20")
        writer.process(conn, producer, [Message(commands, 0, 0, records.encode(payment))])
        conn.execute(
            "UPDATE wallet_balances SET reserved_balance = 0 WHERE wallet_id = %s", (alice,)
        )
        captured = records.GatewayResponded(
            transaction_id=payment.transaction_id,
            wallet_id=alice,
            outcome="CAPTURED",
            captured_amount=Decimal(20),
            responded_at=records.utc_now(),
        )
        answer = Message(topics["LEDGER_GATEWAY_RESULTS_TOPIC"], 0, 0, records.encode(captured))
        good = Message(commands, 0, 1, records.encode(command(TRANSFER, alice, wallet(conn), "1")))
        with pytest.raises(LedgerInvariantError, match="exceeds reserved"):
            writer.process(conn, producer, [answer, good])
        assert statuses(conn, [payment.transaction_id]) == {payment.transaction_id: "PENDING"}
        assert store.load_offsets(conn, writer.settings.group, commands) == {0: 1}
        assert writer.totals["dead_letters"] == 0 and writer.totals["unprocessable"] == 0

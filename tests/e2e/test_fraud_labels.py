"""Delayed fraud labels end to end: a label on ``wallet.commands`` reaches the stream, which
learns from it with the features it scored the transaction with (seen in the transaction's
``t:<id>`` key in the stream's changelog); a label for a transaction the stream does not
know, or keyed by another wallet, is dead-lettered with the reason; and ``walletpipe
simulate`` sends fraud scenarios whose every label the stream knows."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from domain import records
from domain.topics import WALLET_COMMANDS, WALLET_PARTITIONS
from models.features import FEATURE_NAMES
from models.scenarios import SCENARIOS
from streams.decided import Decided
from tests.helpers import accepted, funded_wallet, new_wallet, wait_final
from walletpipe.cli import main as walletpipe
from walletpipe.simulate import run_simulation

CHANGELOG = "changelog__wallet-streams--wallet.commands--default"  # the stream's state


def send_label(bootstrap: str, key: str, transaction_id: str, wallet_id: str) -> None:
    label = records.FraudLabelled(
        transaction_id=uuid.UUID(transaction_id),
        wallet_id=uuid.UUID(wallet_id),
        is_fraud=True,
        scenario="card_testing",
        labelled_at=datetime.now(UTC),
    )
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    producer.produce(WALLET_COMMANDS.name, key=key.encode(), value=records.encode(label))
    assert producer.flush(10) == 0


def consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


def dead_letter(bootstrap: str, key: str, timeout_s: float = 30) -> dict[str, str]:
    reader = consumer(bootstrap)
    reader.assign([TopicPartition(WALLET_COMMANDS.dead_letter, 0, 0)])
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in reader.consume(500, timeout=0.5):
                if not message.error() and message.key() == key.encode():
                    return {k: v.decode() for k, v in message.headers() or []}
    finally:
        reader.close()
    raise AssertionError(f"no dead-lettered label with key {key}")


def paid_wallet(api: httpx.Client) -> tuple[str, str]:
    wallet, shop = funded_wallet(api, "50.00"), new_wallet(api)
    payment = accepted(
        api,
        {
            "transaction_type": "PAYMENT",
            "source_wallet_id": wallet,
            "destination_wallet_id": shop,
            "amount": "1.25",
            "currency_code": "USD",
            "metadata": {"channel": "WEB", "terminal_id": "W0001", "device_id": "DF1"},
        },
    )
    # Scored whatever its outcome (a cold stream may not have credited the deposit yet).
    wait_final(api, payment)
    return wallet, payment


def test_a_label_reaches_the_stream_and_is_learnt_with_the_scored_features(
    api: httpx.Client, running: dict[str, str]
) -> None:
    bootstrap = running["KAFKA_BOOTSTRAP"]
    wallet, payment = paid_wallet(api)
    changes = consumer(bootstrap)
    changes.assign([TopicPartition(CHANGELOG, p, OFFSET_END) for p in range(WALLET_PARTITIONS)])
    changes.consume(1, timeout=1.0)  # resolves the end offsets before the label goes out
    try:
        send_label(bootstrap, wallet, payment, wallet)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in changes.consume(500, timeout=0.5):
                if message.error() or message.key() != f"{wallet}|t:{payment}".encode():
                    continue
                decided = Decided.decode(message.value())
                if not decided.labelled:
                    continue  # another change of the transaction (its settlement)
                features = decided.features_for(FEATURE_NAMES)
                assert features is not None
                assert features["log_amount"] > 0 and "customer_amount_ratio_30d" in features
                return
    finally:
        changes.close()
    raise AssertionError("the stream did not apply the label")


def test_a_label_for_an_unknown_transaction_is_dead_lettered(
    api: httpx.Client, running: dict[str, str]
) -> None:
    bootstrap = running["KAFKA_BOOTSTRAP"]
    wallet, payment = paid_wallet(api)
    unknown = str(uuid.uuid4())
    send_label(bootstrap, wallet, unknown, wallet)
    headers = dead_letter(bootstrap, wallet)
    assert headers["dlq.topic"] == WALLET_COMMANDS.name
    # The stream's own reason, not a crash report.
    assert headers["dlq.reason"].startswith(f"transaction {unknown} is not held for this wallet")
    # Keyed by another wallet than the one it names: its partition cannot know it.
    stranger = str(uuid.uuid4())
    send_label(bootstrap, stranger, payment, wallet)
    reason = dead_letter(bootstrap, stranger)["dlq.reason"]
    assert reason == "record key is not the wallet it is about"


def test_simulated_fraud_and_its_labels_reach_the_stream(running: dict[str, str]) -> None:
    summary = asyncio.run(
        run_simulation(
            running["INGEST_URL"],
            running["DEMO_API_KEY"],
            running["KAFKA_BOOTSTRAP"],
            tps=25,
            seconds=4,
            users=20,
            merchants=4,
            seed=7,
            label_delay_s=1.0,
        )
    )
    assert summary["accepted"] > 100
    assert set(summary["fraud_sent"]) == set(SCENARIOS)
    assert summary["labels_published"] == summary["accepted"]
    assert summary["labels_undelivered"] == 0
    assert summary["labels_dead_lettered"] == 0, summary.get("label_dlq_reason")


def test_a_label_that_came_too_early_is_applied_when_its_dead_letter_is_replayed(
    api: httpx.Client,
    running: dict[str, str],
    stack_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``walletpipe dlq list`` shows the dead letter with its reason; once its cause is gone
    (here: the transaction it labels has been decided since), ``dlq replay`` sends it back
    and the stream applies it."""
    monkeypatch.setenv("WALLETPIPE_LOCAL_DIR", str(stack_dir))
    bootstrap = running["KAFKA_BOOTSTRAP"]
    wallet, shop = funded_wallet(api, "50.00"), new_wallet(api)
    early = uuid.uuid4()
    send_label(bootstrap, wallet, str(early), wallet)  # its request has not come yet
    dead_letter(bootstrap, wallet)
    assert walletpipe(["dlq", "list", WALLET_COMMANDS.name, "--limit", "1000000"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if wallet in line]
    assert listed and "FraudLabelled" in listed[-1] and "is not held for this wallet" in listed[-1]
    offset = int(listed[-1].split()[0])
    request = records.TransactionRequested(
        transaction_id=early,
        transaction_type="PAYMENT",
        source_wallet_id=uuid.UUID(wallet),
        destination_wallet_id=uuid.UUID(shop),
        amount=Decimal("5.00"),
        fee_amount=Decimal("0.05"),
        total_amount=Decimal("5.05"),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key=str(early),
        requested_at=datetime.now(UTC),
    )
    changes = consumer(bootstrap)
    changes.assign([TopicPartition(CHANGELOG, p, OFFSET_END) for p in range(WALLET_PARTITIONS)])
    changes.consume(1, timeout=1.0)  # resolves the end offsets before anything goes out
    try:
        producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
        producer.produce(WALLET_COMMANDS.name, key=wallet.encode(), value=records.encode(request))
        assert producer.flush(10) == 0
        assert walletpipe(["dlq", "replay", WALLET_COMMANDS.name, "--offset", str(offset)]) == 0
        assert "replayed 1 dead letter(s)" in capsys.readouterr().out
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for message in changes.consume(500, timeout=0.5):
                if message.error() or message.key() != f"{wallet}|t:{early}".encode():
                    continue
                if Decided.decode(message.value()).labelled:
                    return
    finally:
        changes.close()
    raise AssertionError("the replayed label was not applied")

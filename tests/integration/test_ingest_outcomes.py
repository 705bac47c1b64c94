"""The ingest API's outcome consumer (``Prefer: wait``) against the real broker: a waiter
registered before its transaction ends gets the ending record's outcome; one nobody waits
for is skipped; a waiter whose transaction does not end in time gets nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain import records
from domain.topics import TRANSACTIONS_REJECTED
from domain.transactions import TransactionType
from ingest_api.outcomes import OutcomeWatcher
from tests.helpers import ordered_producer

pytestmark = pytest.mark.integration


def rejection(transaction_id: uuid.UUID) -> records.TransactionRejected:
    now = datetime.now(UTC)
    return records.TransactionRejected(
        transaction_id=transaction_id,
        transaction_type=TransactionType.TRANSFER,
        source_wallet_id=uuid.uuid4(),
        destination_wallet_id=uuid.uuid4(),
        amount=Decimal("5.0000"),
        fee_amount=Decimal("0.0000"),
        total_amount=Decimal("5.0000"),
        currency_code="USD",
        client_id=uuid.uuid4(),
        idempotency_key=str(transaction_id),
        requested_at=now,
        reason_code="INSUFFICIENT_FUNDS",
        reason_message="the source wallet lacks 5.0000 USD",
        decided_at=now,
    )


def test_a_waiter_hears_its_outcome_from_kafka(stack: dict) -> None:
    async def scenario() -> None:
        watcher = OutcomeWatcher(stack["KAFKA_BOOTSTRAP"], waiters_max=10)
        watcher.start()
        try:
            deadline = time.monotonic() + 60
            waited, lonely = uuid.uuid4(), uuid.uuid4()
            while (future := watcher.register(waited)) is None:
                assert time.monotonic() < deadline, "the outcome consumer never got ready"
                await asyncio.sleep(0.2)
            never = watcher.register(lonely)
            assert never is not None
            producer = ordered_producer(stack["KAFKA_BOOTSTRAP"])
            for transaction_id in (uuid.uuid4(), waited):  # the first: nobody waits for it
                record = rejection(transaction_id)
                producer.produce(
                    TRANSACTIONS_REJECTED.name, records.encode(record), record.partition_key
                )
            producer.flush(30)
            outcome = await watcher.wait(waited, future, 60)
            assert outcome is not None
            assert (outcome.transaction_status, outcome.failure_code) == (
                "FAILED",
                "INSUFFICIENT_FUNDS",
            )
            assert await watcher.wait(lonely, never, 0.5) is None  # it never ended
            assert watcher.waiting == 0  # every waiter is gone once answered or timed out
        finally:
            watcher.close()

    asyncio.run(scenario())


def test_the_waiter_table_is_bounded(stack: dict) -> None:
    async def scenario() -> None:
        watcher = OutcomeWatcher(stack["KAFKA_BOOTSTRAP"], waiters_max=2)
        watcher.start()
        try:
            deadline = time.monotonic() + 60
            while watcher.register(uuid.uuid4()) is None:
                assert time.monotonic() < deadline, "the outcome consumer never got ready"
                await asyncio.sleep(0.2)
            assert watcher.register(uuid.uuid4()) is not None
            assert watcher.register(uuid.uuid4()) is None  # full: answered 202 at once
        finally:
            watcher.close()

    asyncio.run(scenario())

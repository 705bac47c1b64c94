"""``/v1/reviews``: analysts decide transactions the stream held for review.

The stream publishes each held transaction on ``reviews.requested``; a background worker of
the API records it in ``transaction_reviews`` and declines, on ``wallet.commands``, every
review whose deadline passed. An analyst's approve or decline is published on
``wallet.commands`` (keyed by the wallet) while the review row is locked, then recorded:
the stream applies the first decision it reads and ignores later ones, so an analyst racing
the timeout can never both release and post the funds.

Keys with the role ``analyst``, ``compliance`` or ``admin`` list and decide reviews.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from confluent_kafka import Consumer, KafkaError, Message, Producer
from fastapi import APIRouter, FastAPI, Query, Request
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from domain import records
from domain.access import KeyGrant
from domain.backoff import Backoff
from domain.exceptions import RecordDecodeError
from domain.inputs import CanonicalUuid, MaskedNote
from domain.kafka_clients import bulk_consumer
from domain.money import wire
from domain.topics import REVIEWS_REQUESTED, WALLET_COMMANDS
from ingest_api.deps import Reviewer, service_of
from ingest_api.exceptions import Conflict, NotFound
from ingest_api.publisher import producer_config

log = logging.getLogger("ingest_api.reviews")

LIST_ROWS_MAX = 500
#: Overdue reviews declined per pass of the timeout loop, and its pace.
EXPIRE_BATCH_MAX = 100
POLL_INTERVAL_S = 0.5
CONSUMER_GROUP = "ingest-reviews"
#: Reviews consumed and not yet recorded, at most; a failed pass waits up to this long.
REVIEW_BATCH_MAX = 500
REVIEW_RETRY_DELAY_MAX_S = 10.0


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: MaskedNote | None = Field(default=None, max_length=1000)


class ReviewOut(BaseModel):
    transaction_id: uuid.UUID
    wallet_id: uuid.UUID
    transaction_type: str
    amount: str
    currency_code: str
    risk_score: str
    status: str
    review_deadline: Any
    decided_by: str | None
    decided_at: Any
    created_at: Any


class ReviewList(BaseModel):
    reviews: list[ReviewOut]


_COLUMNS = """transaction_id, wallet_id, transaction_type, amount, currency_code, risk_score,
    status, review_deadline, decided_by, decided_at, created_at"""


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "amount": wire(row["amount"]), "risk_score": str(row["risk_score"])}


def decision_record(
    row: dict[str, Any], decision: Literal["APPROVE", "DECLINE"], by: str, note: str | None
) -> records.ReviewDecided:
    return records.ReviewDecided(
        transaction_id=row["transaction_id"],
        wallet_id=row["wallet_id"],
        decision=decision,
        decided_by=by[:100],
        note=note,
        decided_at=datetime.now(UTC),
    )


def _record_review(conn: psycopg.Connection[Any], held: records.ReviewRequested) -> None:
    wallet = held.source_wallet_id or held.destination_wallet_id
    conn.execute(
        """INSERT INTO transaction_reviews (transaction_id, client_id, wallet_id,
               transaction_type, amount, currency_code, risk_score, record, review_deadline,
               created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
           ON CONFLICT (transaction_id) DO NOTHING""",
        (
            held.transaction_id,
            held.client_id,
            wallet,
            held.transaction_type.value,
            held.amount,
            held.currency_code,
            held.risk_score,
            Jsonb(held.model_dump(mode="json")),
            held.review_deadline,
        ),
    )


def _expire_overdue(conn: psycopg.Connection[Any], producer: Producer, timeout_s: float) -> int:
    """Decline every review past its deadline: publish, then record, under the row lock."""
    with conn.transaction():
        rows = conn.execute(
            f"""SELECT {_COLUMNS} FROM transaction_reviews
                 WHERE status = 'PENDING' AND review_deadline < now()
                 ORDER BY review_deadline LIMIT %s FOR UPDATE SKIP LOCKED""",
            (EXPIRE_BATCH_MAX,),
        ).fetchall()
        for row in rows:
            decided = decision_record(row, "DECLINE", "timeout", "no analyst decided in time")
            producer.produce(
                WALLET_COMMANDS.name,
                key=str(row["wallet_id"]).encode(),
                value=records.encode(decided),
            )
        if rows and producer.flush(timeout_s) > 0:
            raise RuntimeError("Kafka did not acknowledge the review timeouts")
        conn.execute(
            """UPDATE transaction_reviews SET status = 'EXPIRED', decided_by = 'timeout',
                      decided_at = now() WHERE transaction_id = ANY(%s)""",
            ([row["transaction_id"] for row in rows],),
        )
    return len(rows)


def run_review_worker(database_url: str, bootstrap: str, stop: threading.Event) -> None:
    """Record held reviews and expire overdue ones until ``stop`` is set (a thread).

    A review consumed is kept until it is recorded, and the consumer's offsets move only
    once everything consumed is: a pass that fails (PostgreSQL restarting, Kafka away)
    loses nothing, and the next pass, after a bounded backoff and on a new connection if
    the old one broke, records it."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": CONSUMER_GROUP,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **bulk_consumer(),
        }
    )
    producer = Producer(producer_config(bootstrap, 5))
    consumer.subscribe([REVIEWS_REQUESTED.name])
    unrecorded: list[Message] = []  # consumed, not yet in transaction_reviews
    conn: psycopg.Connection[Any] | None = None
    backoff = Backoff(0.5, REVIEW_RETRY_DELAY_MAX_S)
    try:
        while not stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        database_url, autocommit=True, row_factory=dict_row, connect_timeout=5
                    )
                room = REVIEW_BATCH_MAX - len(unrecorded)
                if room > 0:
                    unrecorded.extend(consumer.consume(num_messages=room, timeout=POLL_INTERVAL_S))
                _record_reviews(conn, unrecorded)
                if unrecorded:
                    unrecorded.clear()
                    consumer.commit(asynchronous=False)  # everything consumed is recorded
                _expire_overdue(conn, producer, 10.0)
                backoff.reset()
            except Exception as error:  # noqa: BLE001 - keep serving; the next pass retries
                delay = backoff.next_delay()
                log.warning("review worker pass failed (%s); again in %.1fs", error, delay)
                if conn is not None and (conn.broken or conn.closed):
                    conn.close()
                    conn = None
                stop.wait(delay)
    finally:
        consumer.close()
        producer.flush(5)
        if conn is not None:
            conn.close()


def _record_reviews(conn: psycopg.Connection[Any], messages: list[Message]) -> None:
    for message in messages:
        if message.error() is not None:
            if message.error().code() != KafkaError._PARTITION_EOF:
                log.warning("reviews consumer: %s", message.error())
            continue
        try:
            _record_review(conn, records.decode_review_requested(message.value()))
        except RecordDecodeError as error:  # the stream's own records: log it
            log.error("undecodable review request: %s", error.message)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.service.settings
    stop = threading.Event()
    worker = threading.Thread(
        target=run_review_worker,
        args=(settings.database_url, settings.kafka_bootstrap, stop),
        name="review-worker",
        daemon=True,
    )
    worker.start()
    try:
        yield
    finally:
        stop.set()
        await asyncio.to_thread(worker.join, 10)


router = APIRouter(prefix="/v1/reviews", tags=["reviews"], lifespan=lifespan)


@router.get("", response_model=ReviewList)
async def list_reviews(
    _client: Reviewer,
    request: Request,
    status: Annotated[Literal["PENDING", "APPROVED", "DECLINED", "EXPIRED"], Query()] = "PENDING",
) -> dict[str, Any]:
    async with service_of(request).repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM transaction_reviews WHERE status = %s
                 ORDER BY created_at, transaction_id LIMIT %s""",
            (status, LIST_ROWS_MAX),
        )
        rows = await cur.fetchall()
    return {"reviews": [_out(row) for row in rows]}


async def _decide(
    request: Request,
    client: KeyGrant,
    transaction_id: uuid.UUID,
    decision: Literal["APPROVE", "DECLINE"],
    note: str | None,
) -> dict[str, Any]:
    service = service_of(request)
    async with service.repository.pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"SELECT {_COLUMNS} FROM transaction_reviews WHERE transaction_id = %s FOR UPDATE",
            (transaction_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no review of transaction {transaction_id}", code="REVIEW_NOT_FOUND")
        if row["status"] != "PENDING":
            raise Conflict(f"the review was {row['status']} already", code="REVIEW_DECIDED")
        decided = decision_record(row, decision, f"analyst {client.client_name}", note)
        await service.publisher.publish(
            WALLET_COMMANDS.name, str(row["wallet_id"]).encode(), records.encode(decided)
        )
        await cur.execute(
            f"""UPDATE transaction_reviews SET status = %s, decided_by = %s, decided_at = %s
                 WHERE transaction_id = %s RETURNING {_COLUMNS}""",
            (
                "APPROVED" if decision == "APPROVE" else "DECLINED",
                decided.decided_by,
                decided.decided_at,
                transaction_id,
            ),
        )
        updated = await cur.fetchone()
    assert updated is not None
    return _out(updated)


@router.post("/{transaction_id}/approve", response_model=ReviewOut)
async def approve(
    transaction_id: CanonicalUuid,
    client: Reviewer,
    request: Request,
    body: ReviewDecision | None = None,
) -> dict[str, Any]:
    return await _decide(request, client, transaction_id, "APPROVE", body and body.note)


@router.post("/{transaction_id}/decline", response_model=ReviewOut)
async def decline(
    transaction_id: CanonicalUuid,
    client: Reviewer,
    request: Request,
    body: ReviewDecision | None = None,
) -> dict[str, Any]:
    return await _decide(request, client, transaction_id, "DECLINE", body and body.note)

"""Publishes accepted requests that were recorded but never acknowledged by Kafka.

The API records a request (``transaction_requests``) before it publishes it; when Kafka is
away at that moment the caller hears OUTCOME_UNKNOWN and the row stays unpublished. Every
accepted request must reach an outcome whether or not its caller retries, so this loop
publishes rows that have stayed unpublished longer than a publish can take, and marks them.
A record published twice (its first publish was acknowledged after all, and the mark was
lost) is harmless: the stream and the ledger skip a transaction id they have seen.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from domain import records
from domain.backoff import Backoff
from domain.topics import WALLET_COMMANDS
from ingest_api.exceptions import Unavailable
from ingest_api.outages import DATABASE_ERRORS
from ingest_api.publisher import KafkaPublisher
from ingest_api.settings import IngestSettings

log = logging.getLogger("ingest_api")

_UNPUBLISHED_SQL = """SELECT transaction_id, record FROM transaction_requests
                       WHERE published_at IS NULL AND created_at < %s
                       ORDER BY created_at LIMIT %s"""
_MARK_SQL = """UPDATE transaction_requests SET published_at = now()
                WHERE transaction_id = ANY(%s) AND published_at IS NULL"""


async def relay_once(
    pool: AsyncConnectionPool, publisher: KafkaPublisher, older_than: datetime, limit: int
) -> int:
    """Publish up to ``limit`` requests recorded before ``older_than`` and still unpublished;
    return how many went out. Raises when the database or Kafka is away (nothing is marked
    that Kafka did not acknowledge)."""
    async with pool.connection() as conn:
        cur = await conn.execute(_UNPUBLISHED_SQL, (older_than, limit))
        rows = await cur.fetchall()
    if not rows:
        return 0
    requests = [records.TransactionRequested.model_validate(record) for _id, record in rows]
    await asyncio.gather(
        *[
            publisher.publish(WALLET_COMMANDS.name, request.partition_key, records.encode(request))
            for request in requests
        ]
    )
    published: list[uuid.UUID] = [request.transaction_id for request in requests]
    async with pool.connection() as conn:
        await conn.execute(_MARK_SQL, (published,))
    return len(published)


async def relay_forever(
    pool: AsyncConnectionPool, publisher: KafkaPublisher, settings: IngestSettings
) -> None:
    """Every ``relay_interval_ms``; after a failure, with a growing pause (bounded)."""
    backoff = Backoff(settings.relay_interval_ms / 1000, settings.relay_retry_delay_max_ms / 1000)
    age = timedelta(milliseconds=settings.publish_timeout_ms + settings.relay_grace_ms)
    delay_s = settings.relay_interval_ms / 1000
    last_warning = 0.0
    while True:
        await asyncio.sleep(delay_s)
        try:
            sent = await relay_once(
                pool, publisher, datetime.now(UTC) - age, settings.relay_batch_max
            )
        except (*DATABASE_ERRORS, Unavailable) as error:
            delay_s = backoff.next_delay()
            if time.monotonic() - last_warning > 10:
                last_warning = time.monotonic()
                log.warning(
                    "relay of unpublished requests waits (%s); next in %.1fs", error, delay_s
                )
            continue
        backoff.reset()
        delay_s = settings.relay_interval_ms / 1000
        if sent:
            log.warning("relayed %d accepted request(s) that Kafka had not acknowledged", sent)
            delay_s = 0.0  # more may be waiting

"""Records announcing a customer change, written with the change and then published.

A wallet's status, a user's KYC status and a user's devices reach the stream on
``wallet.commands``. ``stage`` writes the records in the caller's PostgreSQL transaction
(table ``customer_outbox``), so a change is never committed without them; ``publish``
then sends every unpublished record of the subject, oldest first, and marks them. When
Kafka is away the caller hears 503 and the rows wait: a retry of the request, or the next
change of the same subject, publishes them. Each record carries a version that only grows,
so the stream keeps the newest whatever is published twice or late.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from domain import records
from domain.topics import WALLET_COMMANDS
from ingest_api.publisher import KafkaPublisher

#: Records of one subject published per call (a user's wallets are bounded below it).
PUBLISH_BATCH_MAX = 2_000


async def stage(cur: Any, subject_id: uuid.UUID, announced: list[records.Record]) -> None:
    """Write ``announced`` (records keyed by their ``partition_key``) in ``cur``'s transaction."""
    now = datetime.now(UTC)
    for record in announced:
        await cur.execute(
            """INSERT INTO customer_outbox (event_id, subject_id, topic, record_key, record,
                   created_at) VALUES (%s, %s, %s, %s, %s, %s)""",
            (
                record.event_id,
                subject_id,
                WALLET_COMMANDS.name,
                record.partition_key.decode(),  # type: ignore[attr-defined]
                Jsonb(record.model_dump(mode="json")),
                now,
            ),
        )


async def publish(
    pool: AsyncConnectionPool, publisher: KafkaPublisher, subject_id: uuid.UUID
) -> int:
    """Publish what is staged for ``subject_id`` and not yet acknowledged; how many went."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT event_id, topic, record_key, record::text FROM customer_outbox
                WHERE subject_id = %s AND published_at IS NULL
                ORDER BY created_at, event_id LIMIT %s""",
            (subject_id, PUBLISH_BATCH_MAX),
        )
        rows = await cur.fetchall()
    for _event_id, topic, key, value in rows:  # in order: one subject's records stay ordered
        await publisher.publish(topic, key.encode(), value.encode())
    if rows:
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE customer_outbox SET published_at = now() WHERE event_id = ANY(%s)",
                ([row[0] for row in rows],),
            )
    return len(rows)

"""The notification service's statements: which clients listen to what, storing a batch's
deliveries, claiming due ones fairly across endpoints, and recording each attempt.

PostgreSQL is the schedule: a delivery is a row (``webhook_deliveries``, migration 0070)
due at ``next_attempt_at``. Claiming one moves ``next_attempt_at`` past the attempt's
timeout (a lease: a service that dies mid-attempt leaves it to be tried again), so any
number of notification processes can share the table (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg.rows import dict_row

from domain.webhooks import WebhookEvent


def subscribed_pairs(conn: Connection[Any]) -> set[tuple[uuid.UUID, str]]:
    """(client, event type) of every live subscription."""
    rows = conn.execute(
        "SELECT DISTINCT client_id, unnest(event_types) FROM webhook_subscriptions"
        " WHERE deleted_at IS NULL"
    ).fetchall()
    return {(row[0], row[1]) for row in rows}


def clients_of(
    conn: Connection[Any], transaction_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """The client that submitted each transaction (those the API accepted)."""
    rows = conn.execute(
        "SELECT transaction_id, client_id FROM transaction_requests WHERE transaction_id = ANY(%s)",
        (list(transaction_ids),),
    ).fetchall()
    return {row[0]: row[1] for row in rows}


def store_deliveries(
    conn: Connection[Any],
    events: list[tuple[WebhookEvent, uuid.UUID]],
    pending_max: int = 100_000,
) -> int:
    """One delivery per event (with its client) and live endpoint subscribed to its type,
    numbered in the events' order; an event an endpoint has already is left alone (a
    record read twice). An endpoint with ``pending_max`` deliveries waiting already (dead
    for hours) gets the new ones dead-lettered at once, so its backlog stays bounded; they
    can be redelivered. Returns the deliveries made."""
    if not events:
        return 0
    cur = conn.execute(
        """
        WITH backlog AS (
            SELECT d.subscription_id, count(*) AS pending
              FROM webhook_deliveries d
              JOIN webhook_subscriptions s USING (subscription_id)
             WHERE d.status = 'PENDING' AND s.deleted_at IS NULL
               AND s.client_id = ANY(%(clients)s::uuid[])
             GROUP BY d.subscription_id
        )
        INSERT INTO webhook_deliveries
            (subscription_id, event_id, event_type, transaction_id, body, status, last_error,
             finished_at)
        SELECT s.subscription_id, e.event_id, e.event_type, e.transaction_id, e.body,
               CASE WHEN full_ THEN 'DEAD' ELSE 'PENDING' END,
               CASE WHEN full_ THEN 'the endpoint had ' || b.pending
                                    || ' deliveries pending already' END,
               CASE WHEN full_ THEN now() END
          FROM unnest(%(ids)s::uuid[], %(types)s::text[], %(clients)s::uuid[],
                      %(transactions)s::uuid[], %(bodies)s::bytea[])
               WITH ORDINALITY AS e(event_id, event_type, client_id, transaction_id, body, n)
          JOIN webhook_subscriptions s
            ON s.client_id = e.client_id AND e.event_type = ANY(s.event_types)
           AND s.deleted_at IS NULL
          LEFT JOIN backlog b USING (subscription_id)
         CROSS JOIN LATERAL (SELECT coalesce(b.pending, 0) >= %(pending_max)s AS full_) f
         ORDER BY e.n, s.subscription_id
        ON CONFLICT (subscription_id, event_id) DO NOTHING
        """,
        {
            "ids": [e.event_id for e, _ in events],
            "types": [e.event_type.value for e, _ in events],
            "clients": [client for _, client in events],
            "transactions": [e.transaction_id for e, _ in events],
            "bodies": [e.body() for e, _ in events],
            "pending_max": pending_max,
        },
    )
    return cur.rowcount


@dataclass(frozen=True)
class Claimed:
    """A delivery taken for one attempt."""

    delivery_id: int
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    body: bytes
    attempts: int
    first_attempt_at: datetime
    url: str
    secret: str


async def claim(
    conn: AsyncConnection[Any],
    *,
    room: int,
    free_by_endpoint: Mapping[uuid.UUID, int],
    endpoint_max: int,
    lease_s: float,
) -> list[Claimed]:
    """Up to ``room`` due deliveries, at most ``endpoint_max`` (or what ``free_by_endpoint``
    says is left) per endpoint, endpoints in random order so none starves the others. A
    delivery waits while an earlier one of the same transaction to the same endpoint is
    pending (in flight or waiting for its retry): events of a transaction arrive in order."""
    busy = list(free_by_endpoint.items())
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """
        WITH picked AS (
            SELECT p.delivery_id
              FROM (SELECT subscription_id FROM webhook_subscriptions
                     WHERE deleted_at IS NULL ORDER BY random()) s
              LEFT JOIN unnest(%(busy)s::uuid[], %(free)s::int[]) AS b(subscription_id, free)
                USING (subscription_id)
             CROSS JOIN LATERAL (
                SELECT d.delivery_id FROM webhook_deliveries d
                 WHERE d.subscription_id = s.subscription_id AND d.status = 'PENDING'
                   AND d.next_attempt_at <= now()
                   AND NOT EXISTS (
                       SELECT 1 FROM webhook_deliveries e
                        WHERE e.subscription_id = d.subscription_id
                          AND e.transaction_id = d.transaction_id
                          AND e.status = 'PENDING' AND e.delivery_id < d.delivery_id)
                 ORDER BY d.next_attempt_at, d.delivery_id
                 LIMIT coalesce(b.free, %(endpoint_max)s)
                 FOR UPDATE SKIP LOCKED) p
             LIMIT %(room)s
        )
        UPDATE webhook_deliveries d
           SET next_attempt_at = now() + make_interval(secs => %(lease_s)s),
               attempts = d.attempts + 1,
               first_attempt_at = coalesce(d.first_attempt_at, now()),
               last_attempt_at = now()
          FROM picked, webhook_subscriptions s
         WHERE d.delivery_id = picked.delivery_id AND s.subscription_id = d.subscription_id
        RETURNING d.delivery_id, d.subscription_id, d.event_id, d.event_type, d.body,
                  d.attempts, d.first_attempt_at, s.url, s.secret
        """,
        {
            "busy": [sub for sub, _ in busy],
            "free": [free for _, free in busy],
            "endpoint_max": endpoint_max,
            "room": room,
            "lease_s": lease_s,
        },
    )
    rows = await cur.fetchall()
    return [Claimed(**{**row, "body": bytes(row["body"])}) for row in rows]


async def delivered(
    conn: AsyncConnection[Any], delivery_id: int, status_code: int, answer: str
) -> None:
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'DELIVERED', finished_at = now(),"
        " last_status_code = %s, last_error = %s WHERE delivery_id = %s AND status = 'PENDING'",
        (status_code, answer or None, delivery_id),
    )


async def failed(
    conn: AsyncConnection[Any],
    delivery_id: int,
    status_code: int | None,
    error: str,
    retry_at: datetime | None,
) -> None:
    """Record a failed attempt: due again at ``retry_at``, or dead-lettered (None)."""
    if retry_at is None:
        await conn.execute(
            "UPDATE webhook_deliveries SET status = 'DEAD', finished_at = now(),"
            " last_status_code = %s, last_error = %s WHERE delivery_id = %s AND status = 'PENDING'",
            (status_code, error, delivery_id),
        )
        return
    await conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = %s, last_status_code = %s,"
        " last_error = %s WHERE delivery_id = %s AND status = 'PENDING'",
        (retry_at, status_code, error, delivery_id),
    )

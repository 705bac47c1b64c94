"""Webhook subscriptions and their deliveries in PostgreSQL (migration 0070).

Every function takes an open async connection (autocommit), so ``/v1/webhooks`` (from the
API's pool) and ``walletpipe webhooks`` (a connection of its own) run the same statements.
The notification service (notifications/) makes the deliveries and attempts them; here they
are listed, and sent again on request.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from domain.webhooks import SECRET_DISPLAY_LENGTH, EventType, new_secret

LIST_ROWS_MAX = 1000
DELIVERY_STATUSES = ("PENDING", "DELIVERED", "DEAD")

_SUBSCRIPTION_COLUMNS = f"""s.subscription_id, s.client_id, c.name AS client_name, s.url,
    s.event_types, s.description, left(s.secret, {SECRET_DISPLAY_LENGTH}) AS secret_prefix,
    s.created_at, s.deleted_at,
    CASE WHEN s.deleted_at IS NULL THEN 'ACTIVE' ELSE 'DELETED' END AS status,
    (SELECT count(*) FROM webhook_deliveries d
      WHERE d.subscription_id = s.subscription_id AND d.status = 'PENDING') AS pending,
    (SELECT count(*) FROM webhook_deliveries d
      WHERE d.subscription_id = s.subscription_id AND d.status = 'DEAD') AS dead"""

_DELIVERY_COLUMNS = """delivery_id, subscription_id, event_id, event_type, transaction_id,
    status, attempts, created_at, first_attempt_at, next_attempt_at, last_attempt_at,
    last_status_code, last_error, finished_at"""


async def create(
    conn: AsyncConnection[Any],
    *,
    client_id: uuid.UUID,
    url: str,
    event_types: list[EventType],
    description: str = "",
) -> tuple[dict[str, Any], str]:
    """A new subscription and its signing secret (shown this once)."""
    secret = new_secret()
    subscription_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO webhook_subscriptions"
        " (subscription_id, client_id, url, event_types, secret, description)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (
            subscription_id,
            client_id,
            url,
            sorted(e.value for e in event_types),
            secret,
            description,
        ),
    )
    row = await subscription(conn, subscription_id)
    assert row is not None
    return row, secret


async def subscription(
    conn: AsyncConnection[Any], subscription_id: uuid.UUID
) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions s"
        " JOIN api_clients c USING (client_id) WHERE s.subscription_id = %s",
        (subscription_id,),
    )
    return await cur.fetchone()


async def subscriptions(
    conn: AsyncConnection[Any], client_id: uuid.UUID | None, include_deleted: bool = False
) -> list[dict[str, Any]]:
    """A client's subscriptions (None: every client's), newest first."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions s"
        " JOIN api_clients c USING (client_id)"
        " WHERE (%(client)s::uuid IS NULL OR s.client_id = %(client)s)"
        "   AND (%(deleted)s OR s.deleted_at IS NULL)"
        " ORDER BY s.created_at DESC LIMIT %(limit)s",
        {"client": client_id, "deleted": include_deleted, "limit": LIST_ROWS_MAX},
    )
    return await cur.fetchall()


async def delete(conn: AsyncConnection[Any], subscription_id: uuid.UUID) -> dict[str, Any] | None:
    """Stop an endpoint: no new deliveries, and those still pending are dead-lettered."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE webhook_subscriptions SET deleted_at = now()"
            " WHERE subscription_id = %s AND deleted_at IS NULL",
            (subscription_id,),
        )
        await conn.execute(
            "UPDATE webhook_deliveries SET status = 'DEAD', finished_at = now(),"
            " last_error = 'the endpoint was deleted'"
            " WHERE subscription_id = %s AND status = 'PENDING'",
            (subscription_id,),
        )
    return await subscription(conn, subscription_id)


async def deliveries(
    conn: AsyncConnection[Any],
    subscription_id: uuid.UUID,
    status: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """An endpoint's deliveries, newest first."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries"
        " WHERE subscription_id = %s AND (%s::text IS NULL OR status = %s)"
        " ORDER BY delivery_id DESC LIMIT %s",
        (subscription_id, status, status, min(limit, LIST_ROWS_MAX)),
    )
    return await cur.fetchall()


async def redeliver(
    conn: AsyncConnection[Any],
    subscription_id: uuid.UUID,
    delivery_ids: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Send again: the given deliveries of the endpoint (delivered or dead), or with None
    every dead one. Each is due at once with a fresh retry window; a pending one is left
    as it is. The endpoint must be live."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"""UPDATE webhook_deliveries d
               SET status = 'PENDING', next_attempt_at = now(), first_attempt_at = NULL,
                   finished_at = NULL
              FROM webhook_subscriptions s
             WHERE d.subscription_id = %(sub)s AND s.subscription_id = d.subscription_id
               AND s.deleted_at IS NULL AND d.status <> 'PENDING'
               AND (CASE WHEN %(ids)s::bigint[] IS NULL THEN d.status = 'DEAD'
                         ELSE d.delivery_id = ANY(%(ids)s::bigint[]) END)
         RETURNING {", ".join("d." + c.strip() for c in _DELIVERY_COLUMNS.split(","))}""",
        {"sub": subscription_id, "ids": delivery_ids},
    )
    return await cur.fetchall()

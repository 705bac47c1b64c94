"""API keys in PostgreSQL: look one up, issue, list, rotate, revoke.

Every function takes an open async connection, so the API (from its pool) and
``walletpipe keys`` (one connection of its own) run the same statements. Keys are issued
through the database function ``api_key_issue`` (migration 0045), the one place that makes
a key. Any change to ``api_keys`` or ``api_clients`` bumps ``api_key_revision`` in the same
transaction (a trigger); the services read it to forget cached keys (domain/access.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from domain.access import KeyLookup, Role, display_prefix, hash_api_key, new_api_key

_KEY_COLUMNS = """k.key_id, k.client_id, c.name AS client_name, k.key_prefix, k.label, k.roles,
    k.rate_limit_per_second, k.rate_limit_burst, k.created_at, k.expires_at, k.revoked_at,
    k.rotated_from,
    CASE WHEN k.revoked_at IS NOT NULL THEN 'REVOKED'
         WHEN k.expires_at <= now() THEN 'EXPIRED' ELSE 'ACTIVE' END AS status"""

LIST_ROWS_MAX = 1000


async def revision(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT revision FROM api_key_revision")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def lookup(conn: AsyncConnection[Any], key_hash: str) -> KeyLookup | None:
    """None: no key has this hash."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT * FROM api_key_grants WHERE key_hash = %s", (key_hash,))
    row = await cur.fetchone()
    return None if row is None else KeyLookup.from_row(row)


@dataclass(frozen=True)
class NewKey:
    """An issued key: ``api_key`` is the secret, shown this once."""

    api_key: str
    key_id: uuid.UUID
    client_id: uuid.UUID


async def issue(
    conn: AsyncConnection[Any],
    *,
    client_name: str,
    roles: frozenset[Role],
    label: str = "",
    expires_at: datetime | None = None,
    client_rate_limit_per_second: int = 100,
    rate_limit_per_second: int | None = None,
    rate_limit_burst: int | None = None,
    rotated_from: uuid.UUID | None = None,
) -> NewKey:
    """A new key of the client ``client_name`` (made if new, with its rate limit)."""
    api_key = new_api_key()
    cur = await conn.execute(
        "SELECT key_id, client_id FROM api_key_issue(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            client_name,
            hash_api_key(api_key),
            display_prefix(api_key),
            sorted(r.value for r in roles),
            label,
            expires_at,
            client_rate_limit_per_second,
            rate_limit_per_second,
            rate_limit_burst,
            rotated_from,
        ),
    )
    row = await cur.fetchone()
    assert row is not None  # the function always returns its row
    return NewKey(api_key, row[0], row[1])


async def client_name(conn: AsyncConnection[Any], client_id: uuid.UUID) -> str | None:
    cur = await conn.execute("SELECT name FROM api_clients WHERE client_id = %s", (client_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def client_id_of(conn: AsyncConnection[Any], name: str) -> uuid.UUID | None:
    cur = await conn.execute("SELECT client_id FROM api_clients WHERE name = %s", (name,))
    row = await cur.fetchone()
    return None if row is None else row[0]


async def key(conn: AsyncConnection[Any], key_id: uuid.UUID) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys k JOIN api_clients c USING (client_id)"
        " WHERE k.key_id = %s",
        (key_id,),
    )
    return await cur.fetchone()


async def keys_of(conn: AsyncConnection[Any], client_id: uuid.UUID | None) -> list[dict[str, Any]]:
    """The keys of one client, or of every client (None), newest first."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"""SELECT {_KEY_COLUMNS} FROM api_keys k JOIN api_clients c USING (client_id)
             WHERE %(client)s::uuid IS NULL OR k.client_id = %(client)s
             ORDER BY k.created_at DESC, k.key_id LIMIT %(limit)s""",
        {"client": client_id, "limit": LIST_ROWS_MAX},
    )
    return await cur.fetchall()


async def rotate(
    conn: AsyncConnection[Any],
    old: dict[str, Any],
    *,
    grace_s: int,
    expires_at: datetime | None = None,
) -> tuple[NewKey, dict[str, Any]]:
    """A new key like ``old`` (client, roles, label, limits); ``old`` now expires after
    ``grace_s`` (or sooner, if it expired sooner anyway). One transaction: both or neither.
    Returns the new key and the old key's row as it is now."""
    async with conn.transaction():
        new = await issue(
            conn,
            client_name=old["client_name"],
            roles=frozenset(Role(r) for r in old["roles"]),
            label=old["label"],
            expires_at=expires_at,
            rate_limit_per_second=old["rate_limit_per_second"],
            rate_limit_burst=old["rate_limit_burst"],
            rotated_from=old["key_id"],
        )
        until = datetime.now(UTC) + timedelta(seconds=grace_s)
        await conn.execute(
            """UPDATE api_keys SET expires_at = least(coalesce(expires_at, %s), %s)
                WHERE key_id = %s""",
            (until, until, old["key_id"]),
        )
        updated = await key(conn, old["key_id"])
    assert updated is not None
    return new, updated


async def revoke(conn: AsyncConnection[Any], key_id: uuid.UUID) -> dict[str, Any] | None:
    """Revoke now (a second revoke keeps the first time); None: no such key."""
    await conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = %s",
        (key_id,),
    )
    return await key(conn, key_id)


async def set_key_limits(
    conn: AsyncConnection[Any], key_id: uuid.UUID, per_second: int | None, burst: int | None
) -> dict[str, Any] | None:
    """A key's own limit (None: the client's applies); in force in every process within
    the key cache's trust (the change bumps ``api_key_revision``). None: no such key."""
    await conn.execute(
        "UPDATE api_keys SET rate_limit_per_second = %s, rate_limit_burst = %s WHERE key_id = %s",
        (per_second, burst, key_id),
    )
    return await key(conn, key_id)


async def set_client_limits(
    conn: AsyncConnection[Any], client_id: uuid.UUID, per_second: int, burst: int | None
) -> bool:
    """The client's limit, shared by all its keys (burst None: twice the rate). False: no
    such client."""
    cur = await conn.execute(
        """UPDATE api_clients SET rate_limit_per_second = %s, rate_limit_burst = %s
            WHERE client_id = %s""",
        (per_second, burst, client_id),
    )
    return cur.rowcount == 1

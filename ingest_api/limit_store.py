"""PostgreSQL rows of spending limits, and their publication to the stream.

The stream applies a wallet's limits in the wallet's partition, so the API publishes, per
wallet, the whole set that applies to it (its own limits and its user's) on the compacted
topic ``wallet.commands`` keyed by the wallet. A user-scoped change is published for each of
the user's wallets; a new wallet gets its user's limits when it is created. Each change
locks the user row, so the sets of one user's wallets are read in change order, and each
set carries a version from a sequence taken under that lock.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from domain import records
from domain.limits import LimitPeriod, LimitScope, period_end
from domain.topics import WALLET_COMMANDS
from ingest_api.exceptions import Conflict
from ingest_api.publisher import KafkaPublisher

#: A user's wallets a user-scoped change is published to (the newest first past it).
WALLETS_PER_USER_MAX = 1000

_LIMIT_COLUMNS = """limit_id, user_id, wallet_id, transaction_type, period_type, max_amount,
    max_count, reset_at, created_at, updated_at, version"""

_WALLET_SET_SQL = f"""
SELECT {_LIMIT_COLUMNS} FROM transaction_limits
 WHERE wallet_id = %(wallet)s
    OR user_id = (SELECT user_id FROM wallets WHERE wallet_id = %(wallet)s)
 ORDER BY created_at, limit_id
"""

WalletSet = records.WalletLimitsChanged


def _spec(row: dict[str, Any]) -> records.LimitSpec:
    return records.LimitSpec(
        limit_id=row["limit_id"],
        scope=LimitScope.USER if row["user_id"] is not None else LimitScope.WALLET,
        transaction_type=row["transaction_type"],
        period_type=row["period_type"],
        max_amount=row["max_amount"],
        max_count=row["max_count"],
    )


async def _wallet_sets(
    cur: psycopg.AsyncCursor[Any], user_id: uuid.UUID, wallet_ids: list[uuid.UUID]
) -> list[WalletSet]:
    sets = []
    for wallet_id in wallet_ids:
        await cur.execute(_WALLET_SET_SQL, {"wallet": wallet_id})
        rows = await cur.fetchall()
        await cur.execute("SELECT nextval('transaction_limits_publish_version') AS v")
        version = (await cur.fetchone())["v"]  # type: ignore[index]
        sets.append(
            records.WalletLimitsChanged(
                wallet_id=wallet_id,
                user_id=user_id,
                version=version,
                limits=[_spec(row) for row in rows],
            )
        )
    return sets


async def _lock_user(cur: psycopg.AsyncCursor[Any], user_id: uuid.UUID) -> None:
    await cur.execute("SELECT 1 FROM users WHERE user_id = %s FOR UPDATE", (user_id,))


async def _affected_wallets(
    cur: psycopg.AsyncCursor[Any], row: dict[str, Any]
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """(user, wallets whose set changes) for a limit row."""
    if row["wallet_id"] is not None:
        await cur.execute("SELECT user_id FROM wallets WHERE wallet_id = %s", (row["wallet_id"],))
        return (await cur.fetchone())["user_id"], [row["wallet_id"]]  # type: ignore[index]
    await cur.execute(
        """SELECT wallet_id FROM wallets WHERE user_id = %s AND wallet_type <> 'SYSTEM'
            ORDER BY created_at DESC LIMIT %s""",
        (row["user_id"], WALLETS_PER_USER_MAX),
    )
    return row["user_id"], [r["wallet_id"] for r in await cur.fetchall()]


class LimitStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def owner_of_wallet(self, wallet_id: uuid.UUID) -> uuid.UUID | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id FROM wallets WHERE wallet_id = %s AND wallet_type <> 'SYSTEM'",
                (wallet_id,),
            )
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def get(self, limit_id: uuid.UUID) -> dict[str, Any] | None:
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT {_LIMIT_COLUMNS} FROM transaction_limits WHERE limit_id = %s",
                (limit_id,),
            )
            return await cur.fetchone()

    async def list_for_client(
        self,
        client_id: uuid.UUID,
        user_id: uuid.UUID | None,
        wallet_id: uuid.UUID | None,
        rows_max: int,
    ) -> list[dict[str, Any]]:
        """Limits on the client's users and on their wallets (or wallets granted to it)."""
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"""SELECT {_LIMIT_COLUMNS} FROM transaction_limits l
                     WHERE (l.user_id IN (SELECT user_id FROM api_client_users
                                           WHERE client_id = %(client)s)
                         OR l.wallet_id IN (
                              SELECT w.wallet_id FROM wallets w
                                JOIN api_client_users cu ON cu.user_id = w.user_id
                               WHERE cu.client_id = %(client)s
                              UNION SELECT wallet_id FROM api_client_wallet_grants
                               WHERE client_id = %(client)s))
                       AND (%(user)s::uuid IS NULL OR l.user_id = %(user)s::uuid)
                       AND (%(wallet)s::uuid IS NULL OR l.wallet_id = %(wallet)s::uuid)
                     ORDER BY l.created_at, l.limit_id LIMIT %(rows)s""",
                {"client": client_id, "user": user_id, "wallet": wallet_id, "rows": rows_max},
            )
            return await cur.fetchall()

    async def create(
        self, user_id: uuid.UUID, fields: dict[str, Any]
    ) -> tuple[dict[str, Any], list[WalletSet]]:
        """Insert a limit (``fields`` has user_id or wallet_id); ``user_id`` owns it."""
        now = datetime.now(UTC)
        values = {
            **fields,
            "limit_id": uuid.uuid4(),
            "now": now,
            "reset_at": period_end(now, LimitPeriod(fields["period_type"])),
        }
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await _lock_user(cur, user_id)
                await cur.execute(
                    f"""INSERT INTO transaction_limits (limit_id, user_id, wallet_id,
                            transaction_type, period_type, max_amount, max_count, reset_at,
                            created_at, updated_at)
                        VALUES (%(limit_id)s, %(user_id)s, %(wallet_id)s, %(transaction_type)s,
                            %(period_type)s, %(max_amount)s, %(max_count)s, %(reset_at)s,
                            %(now)s, %(now)s)
                        RETURNING {_LIMIT_COLUMNS}""",
                    values,
                )
                row = await cur.fetchone()
                assert row is not None
                owner, wallets = await _affected_wallets(cur, row)
                return row, await _wallet_sets(cur, owner, wallets)
        except psycopg.errors.UniqueViolation:
            raise Conflict(
                "this user or wallet has a limit of this type and period already;"
                " update it instead",
                code="LIMIT_EXISTS",
            ) from None

    async def update(
        self, limit_id: uuid.UUID, user_id: uuid.UUID, changes: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, list[WalletSet]]:
        now = datetime.now(UTC)
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await _lock_user(cur, user_id)
            await cur.execute(
                f"""UPDATE transaction_limits
                       SET max_amount = COALESCE(%(max_amount)s, max_amount),
                           max_count = COALESCE(%(max_count)s, max_count),
                           updated_at = %(now)s, version = version + 1
                     WHERE limit_id = %(limit_id)s
                 RETURNING {_LIMIT_COLUMNS}""",
                {**changes, "now": now, "limit_id": limit_id},
            )
            row = await cur.fetchone()
            if row is None:
                return None, []
            owner, wallets = await _affected_wallets(cur, row)
            return row, await _wallet_sets(cur, owner, wallets)

    async def delete(
        self, limit_id: uuid.UUID, user_id: uuid.UUID
    ) -> tuple[dict[str, Any] | None, list[WalletSet]]:
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await _lock_user(cur, user_id)
            await cur.execute(
                f"DELETE FROM transaction_limits WHERE limit_id = %s RETURNING {_LIMIT_COLUMNS}",
                (limit_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None, []
            owner, wallets = await _affected_wallets(cur, row)
            return row, await _wallet_sets(cur, owner, wallets)


async def publish_sets(publisher: KafkaPublisher, sets: list[WalletSet]) -> None:
    for wallet_set in sets:
        await publisher.publish(
            WALLET_COMMANDS.name, str(wallet_set.wallet_id).encode(), records.encode(wallet_set)
        )


async def publish_wallet_limits(
    pool: AsyncConnectionPool, publisher: KafkaPublisher, wallet_id: uuid.UUID
) -> None:
    """Publish the limits of a (new) wallet, when its user has any."""
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            """SELECT w.user_id, EXISTS (SELECT 1 FROM transaction_limits l
                                          WHERE l.user_id = w.user_id) AS has_limits
                 FROM wallets w WHERE w.wallet_id = %s""",
            (wallet_id,),
        )
        row = await cur.fetchone()
        if row is None or not row["has_limits"]:
            return
        await _lock_user(cur, row["user_id"])
        sets = await _wallet_sets(cur, row["user_id"], [wallet_id])
    await publish_sets(publisher, sets)

"""PostgreSQL reads and writes of the API (users, wallets, accepted requests).

The API never writes transactions, entries or balances: that is the ledger writer's alone.
It records users and wallets (reference data) and each accepted request.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from domain.shards import ShardMap
from ingest_api import ledger_view
from ingest_api.exceptions import Conflict


@dataclass(frozen=True)
class WalletAccess:
    wallet_id: uuid.UUID
    user_id: uuid.UUID
    currency_code: str
    status: str
    allowed: bool
    #: The owning user's KYC status: the stream's default spending limits depend on it.
    kyc_status: str | None = None


@dataclass(frozen=True)
class AcceptedRequest:
    transaction_id: uuid.UUID
    request_hash: str
    record: dict[str, Any]
    published: bool


_WALLET_ACCESS_SQL = """
SELECT w.wallet_id, w.user_id, w.currency_code, w.status,
       (EXISTS (SELECT 1 FROM api_client_users cu
                 WHERE cu.client_id = %(client)s AND cu.user_id = w.user_id)
        OR EXISTS (SELECT 1 FROM api_client_wallet_grants g
                    WHERE g.client_id = %(client)s AND g.wallet_id = w.wallet_id)) AS allowed,
       (SELECT u.kyc_status FROM users u WHERE u.user_id = w.user_id) AS kyc_status
  FROM wallets w
 WHERE w.wallet_id = ANY(%(wallets)s) AND w.wallet_type <> 'SYSTEM'
"""
#: The same, with the revision of wallet access it was read under (ingest_api.caching).
_WALLET_ACCESS_AT_REVISION_SQL = """
SELECT w.wallet_id, w.user_id, w.currency_code, w.status,
       (EXISTS (SELECT 1 FROM api_client_users cu
                 WHERE cu.client_id = %(client)s AND cu.user_id = w.user_id)
        OR EXISTS (SELECT 1 FROM api_client_wallet_grants g
                    WHERE g.client_id = %(client)s AND g.wallet_id = w.wallet_id)) AS allowed,
       (SELECT u.kyc_status FROM users u WHERE u.user_id = w.user_id) AS kyc_status,
       r.revision
  FROM wallet_access_revision r, wallets w
 WHERE w.wallet_id = ANY(%(wallets)s) AND w.wallet_type <> 'SYSTEM'
"""

_TRANSACTION_SQL = "SELECT * FROM transactions WHERE transaction_id = %s"
_EVENTS_SQL = """SELECT event_type, event_status, error_code, error_message, created_at,
                        event_data FROM transaction_events WHERE transaction_id = %s
                  ORDER BY created_at, event_type"""
_BALANCE_SQL = """SELECT b.wallet_id, w.currency_code, b.available_balance, b.pending_balance,
                         b.reserved_balance, b.last_updated_at
                    FROM wallet_balances b JOIN wallets w USING (wallet_id)
                   WHERE b.wallet_id = %s"""


class Repository:
    """``pool`` is the directory (users, wallets, requests); with ledger shards,
    ``shard_pools`` (one per shard, shard 0 first) hold balances and transactions."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        shard_pools: list[AsyncConnectionPool] | None = None,
        quick_pool: AsyncConnectionPool | None = None,
    ) -> None:
        self._pool = pool
        #: Autocommit connections for single statements (one round trip each).
        self._quick_pool = quick_pool or pool
        self._shard_pools = list(shard_pools or [])
        self.shards = ShardMap(max(1, len(self._shard_pools)))

    @property
    def pool(self) -> AsyncConnectionPool:
        return self._pool

    @property
    def quick_pool(self) -> AsyncConnectionPool:
        return self._quick_pool

    def ledger_pool(self, shard: int) -> AsyncConnectionPool:
        """The database of ledger shard ``shard`` (the directory when not sharded)."""
        return self._shard_pools[shard] if self.shards.sharded else self._pool

    async def create_user(self, client_id: uuid.UUID, fields: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        user_id = uuid.uuid4()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    """INSERT INTO users (user_id, email, phone_number, password_hash, salt,
                           first_name, last_name, date_of_birth, status, kyc_status,
                           created_at, updated_at)
                       VALUES (%(user_id)s, %(email)s, %(phone_number)s, %(password_hash)s,
                           %(salt)s, %(first_name)s, %(last_name)s, %(date_of_birth)s,
                           'ACTIVE', 'PENDING', %(now)s, %(now)s)
                       RETURNING user_id, email, status, kyc_status, created_at""",
                    {**fields, "user_id": user_id, "now": now},
                )
                user = await cur.fetchone()
                await cur.execute(
                    "INSERT INTO api_client_users (client_id, user_id) VALUES (%s, %s)",
                    (client_id, user_id),
                )
        except psycopg.errors.UniqueViolation:
            raise Conflict(
                "a user with this email or phone number exists", code="USER_EXISTS"
            ) from None
        assert user is not None
        return user

    async def user_owned(self, client_id: uuid.UUID, user_id: uuid.UUID) -> bool | None:
        """None: no such user; False: it exists but belongs to another client."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT EXISTS (SELECT 1 FROM api_client_users
                                   WHERE client_id = %s AND user_id = u.user_id)
                     FROM users u WHERE u.user_id = %s""",
                (client_id, user_id),
            )
            row = await cur.fetchone()
        return None if row is None else bool(row[0])

    async def user_owned_wallet(self, client_id: uuid.UUID, wallet_id: uuid.UUID) -> bool | None:
        """None: no such wallet; False: its user belongs to another client."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT EXISTS (SELECT 1 FROM api_client_users
                                   WHERE client_id = %s AND user_id = w.user_id)
                     FROM wallets w WHERE w.wallet_id = %s AND w.wallet_type <> 'SYSTEM'""",
                (client_id, wallet_id),
            )
            row = await cur.fetchone()
        return None if row is None else bool(row[0])

    async def create_wallet(
        self, user_id: uuid.UUID, wallet_type: str, currency_code: str
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        wallet_id = uuid.uuid4()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """INSERT INTO wallets (wallet_id, user_id, wallet_type, currency_code, status,
                       created_at, updated_at)
                   VALUES (%s, %s, %s, %s, 'ACTIVE', %s, %s)
                   RETURNING wallet_id, user_id, wallet_type, currency_code, status, created_at""",
                (wallet_id, user_id, wallet_type, currency_code, now, now),
            )
            wallet = await cur.fetchone()
            await cur.execute(
                """INSERT INTO wallet_balances (balance_id, wallet_id, last_updated_at)
                   VALUES (%s, %s, %s)""",
                (uuid.uuid4(), wallet_id, now),
            )
        assert wallet is not None
        return wallet

    async def wallet_access(
        self, client_id: uuid.UUID, wallet_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, WalletAccess]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _WALLET_ACCESS_SQL, {"client": client_id, "wallets": wallet_ids}
            )
            rows = await cur.fetchall()
        return {row[0]: WalletAccess(*row) for row in rows}

    async def wallet_access_with_revision(
        self, client_id: uuid.UUID, wallet_ids: list[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, WalletAccess], int]:
        """The wallets' access and the ``wallet_access_revision`` they were read under (one
        snapshot: the statement sees both as of its start)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _WALLET_ACCESS_AT_REVISION_SQL, {"client": client_id, "wallets": wallet_ids}
            )
            rows = await cur.fetchall()
            if rows:
                return {row[0]: WalletAccess(*row[:-1]) for row in rows}, int(rows[0][-1])
            cur = await conn.execute("SELECT revision FROM wallet_access_revision")
            found = await cur.fetchone()
        return {}, int(found[0]) if found else 0

    async def wallet_access_revision(self) -> int:
        async with self._quick_pool.connection() as conn:
            cur = await conn.execute("SELECT revision FROM wallet_access_revision")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def balance(
        self, wallet_id: uuid.UUID, user_id: uuid.UUID | None = None
    ) -> dict[str, Any] | None:
        """From the user's shard. A shard copies a wallet before it first posts to it, so
        a wallet it has not copied yet has had no posting: the directory's zero row is
        its balance."""
        if self.shards.sharded and user_id is not None:
            pool = self.ledger_pool(self.shards.shard_of_user(user_id))
            async with pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(_BALANCE_SQL, (wallet_id,))
                row = await cur.fetchone()
            if row is not None:
                return row
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_BALANCE_SQL, (wallet_id,))
            return await cur.fetchone()

    async def accepted_request(
        self, client_id: uuid.UUID, idempotency_key: str
    ) -> AcceptedRequest | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT transaction_id, request_hash, record, published_at IS NOT NULL
                     FROM transaction_requests WHERE client_id = %s AND idempotency_key = %s""",
                (client_id, idempotency_key),
            )
            row = await cur.fetchone()
        return None if row is None else AcceptedRequest(*row)

    async def accepted_requests(
        self, client_id: uuid.UUID, idempotency_keys: list[str]
    ) -> dict[str, AcceptedRequest]:
        """The client's accepted requests under any of ``idempotency_keys``, by key."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT idempotency_key, transaction_id, request_hash, record,
                          published_at IS NOT NULL
                     FROM transaction_requests
                    WHERE client_id = %s AND idempotency_key = ANY(%s)""",
                (client_id, idempotency_keys),
            )
            rows = await cur.fetchall()
        return {row[0]: AcceptedRequest(*row[1:]) for row in rows}

    async def accepted_request_by_id(self, transaction_id: uuid.UUID) -> AcceptedRequest | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT transaction_id, request_hash, record, published_at IS NOT NULL
                     FROM transaction_requests WHERE transaction_id = %s""",
                (transaction_id,),
            )
            row = await cur.fetchone()
        return None if row is None else AcceptedRequest(*row)

    async def record_request(
        self,
        client_id: uuid.UUID,
        idempotency_key: str,
        request_hash: str,
        transaction_id: uuid.UUID,
        record: dict[str, Any],
        created_at: datetime,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> bool:
        """False when the same client and key won the race first. With ``conn``, inside
        the caller's transaction (a refund grant records its reversal with its decision)."""
        async with contextlib.AsyncExitStack() as stack:
            if conn is None:
                conn = await stack.enter_async_context(self._pool.connection())
            cur = await conn.execute(
                """INSERT INTO transaction_requests (transaction_id, client_id, idempotency_key,
                       request_hash, record, created_at)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (client_id, idempotency_key) DO NOTHING""",
                (
                    transaction_id,
                    client_id,
                    idempotency_key,
                    request_hash,
                    Jsonb(record),
                    created_at,
                ),
            )
            return cur.rowcount == 1

    async def mark_published(self, transaction_ids: list[uuid.UUID]) -> None:
        async with self._quick_pool.connection() as conn:
            await conn.execute(
                "UPDATE transaction_requests SET published_at = now()"
                " WHERE transaction_id = ANY(%s) AND published_at IS NULL",
                (transaction_ids,),
            )

    async def transaction(
        self, client_id: uuid.UUID, transaction_id: uuid.UUID
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any] | None]:
        """(ledger row or None, its events, the accepted request or None) for this client."""
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT record FROM transaction_requests WHERE transaction_id = %s"
                " AND client_id = %s",
                (transaction_id, client_id),
            )
            request = await cur.fetchone()
            if request is None:
                return None, [], None
            if not self.shards.sharded:
                await cur.execute(_TRANSACTION_SQL, (transaction_id,))
                row = await cur.fetchone()
                await cur.execute(_EVENTS_SQL, (transaction_id,))
                return row, await cur.fetchall(), request["record"]
        views = []
        for shard in ledger_view.shards_of_request(self.shards, request["record"]):
            async with self.ledger_pool(shard).connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(_TRANSACTION_SQL, (transaction_id,))
                row = await cur.fetchone()
                await cur.execute(_EVENTS_SQL, (transaction_id,))
                views.append((row, await cur.fetchall()))
        row, events = ledger_view.merge(views)
        return row, events, request["record"]

    async def client_exists(self, client_id: uuid.UUID) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM api_clients WHERE client_id = %s", (client_id,))
            return await cur.fetchone() is not None

    async def grant_wallet(self, wallet_id: uuid.UUID, client_id: uuid.UUID) -> dict[str, Any]:
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                """INSERT INTO api_client_wallet_grants (client_id, wallet_id) VALUES (%s, %s)
                   ON CONFLICT (client_id, wallet_id) DO UPDATE SET client_id = EXCLUDED.client_id
                   RETURNING wallet_id, client_id, created_at""",
                (client_id, wallet_id),
            )
            row = await cur.fetchone()
        assert row is not None
        return row

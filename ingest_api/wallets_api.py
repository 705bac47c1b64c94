"""A wallet's statement (``GET /v1/wallets/{id}/transactions``, JSON pages or CSV) and its
status (``POST /v1/wallets/{id}/status``: ACTIVE, FROZEN, CLOSED; audited).

The statement reads the ledger (the wallet's user's shard): every transaction of the
wallet, newest first, with the wallet's posted balance after it. Pages are cut by an opaque
cursor (the last entry shown), so entries posted meanwhile never shift a page.

A status change is one PostgreSQL transaction: the wallet row (locked), the audit row
(who, when, why) and the ``WalletStatusChanged`` record for the stream (``ingest_api.outbox``),
published once committed. The stream refuses a frozen wallet's debits (``WALLET_FROZEN``)
in the wallet's own order; its credits still land.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from psycopg.rows import dict_row

from domain import records
from domain.customers import check_status_change, decode_cursor, encode_cursor
from domain.exceptions import DomainError
from domain.inputs import CanonicalUuid
from domain.money import wire
from domain.transactions import TransactionStatus, TransactionType
from ingest_api import outbox
from ingest_api.customer_schemas import (
    ChangeWalletStatus,
    StatementOut,
    StatusChangeOut,
    WalletStatusOut,
)
from ingest_api.deps import Custodian, Tenant, service_of
from ingest_api.exceptions import Conflict, Unavailable, Unprocessable
from ingest_api.ownership import visible_wallet

router = APIRouter(prefix="/v1/wallets", tags=["wallets"])

PAGE_SIZE_MAX = 200
#: Rows of one CSV export; narrow the time range for more.
CSV_ROWS_MAX = 10_000
CSV_COLUMNS = (
    "created_at",
    "transaction_id",
    "transaction_type",
    "status",
    "direction",
    "amount",
    "fee_amount",
    "total_amount",
    "currency_code",
    "balance_after",
    "counterparty_wallet_id",
    "description",
    "completed_at",
)
#: Audit rows listed per wallet (the newest).
STATUS_HISTORY_MAX = 100

_STATEMENT_SQL = """
SELECT t.transaction_id, t.transaction_type, t.transaction_status, t.source_wallet_id,
       t.destination_wallet_id, t.amount, t.fee_amount, t.total_amount, t.currency_code,
       t.description, t.created_at, t.completed_at,
       (SELECT e.balance_after FROM ledger_entries e
         WHERE e.transaction_id = t.transaction_id AND e.wallet_id = %(wallet)s
         ORDER BY e.created_at DESC, e.entry_id DESC LIMIT 1) AS balance_after
  FROM transactions t
 WHERE (t.source_wallet_id = %(wallet)s OR t.destination_wallet_id = %(wallet)s)
   AND (%(before_at)s::timestamptz IS NULL
        OR (t.created_at, t.transaction_id) < (%(before_at)s, %(before_id)s::uuid))
   AND (%(since)s::timestamptz IS NULL OR t.created_at >= %(since)s)
   AND (%(until)s::timestamptz IS NULL OR t.created_at < %(until)s)
   AND (%(types)s::text[] IS NULL OR t.transaction_type = ANY(%(types)s))
   AND (%(statuses)s::text[] IS NULL OR t.transaction_status = ANY(%(statuses)s))
 ORDER BY t.created_at DESC, t.transaction_id DESC
 LIMIT %(limit)s
"""

Types = Annotated[list[TransactionType] | None, Query(description="any of these types")]
Statuses = Annotated[list[TransactionStatus] | None, Query(description="any of these statuses")]
Since = Annotated[datetime | None, Query(description="created at or after (ISO-8601)")]
Until = Annotated[datetime | None, Query(description="created before (ISO-8601)")]


def _entry(wallet_id: uuid.UUID, row: dict[str, Any]) -> dict[str, Any]:
    debit = row["source_wallet_id"] == wallet_id
    return {
        "transaction_id": row["transaction_id"],
        "transaction_type": row["transaction_type"],
        "status": row["transaction_status"],
        "direction": "DEBIT" if debit else "CREDIT",
        "amount": wire(row["amount"]),
        "fee_amount": wire(row["fee_amount"]),
        "total_amount": wire(row["total_amount"]),
        "currency_code": row["currency_code"],
        "description": row["description"],
        "counterparty_wallet_id": row["destination_wallet_id" if debit else "source_wallet_id"],
        "balance_after": None if row["balance_after"] is None else wire(row["balance_after"]),
        "created_at": row["created_at"],
        "completed_at": row["completed_at"],
    }


async def _statement_rows(
    request: Request, wallet_id: uuid.UUID, user_id: uuid.UUID, params: dict[str, Any]
) -> list[dict[str, Any]]:
    repository = service_of(request).repository
    shard = repository.shards.shard_of_user(user_id) if repository.shards.sharded else 0
    async with repository.ledger_pool(shard).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_STATEMENT_SQL, {**params, "wallet": wallet_id})
        return await cur.fetchall()


async def _readable_wallet(request: Request, client: Any, wallet_id: uuid.UUID) -> Any:
    async with service_of(request).repository.pool.connection() as conn:
        return await visible_wallet(conn.cursor(), client, wallet_id, owner_only=False)


def _filters(
    since: datetime | None,
    until: datetime | None,
    types: list[TransactionType] | None,
    statuses: list[TransactionStatus] | None,
) -> dict[str, Any]:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise Unprocessable(f"{name} needs a time zone (e.g. ...Z)", code="INVALID_FIELD")
    return {
        "since": since,
        "until": until,
        "types": [t.value for t in types] if types else None,
        "statuses": [s.value for s in statuses] if statuses else None,
    }


@router.get("/{wallet_id}/transactions", response_model=StatementOut)
async def statement(
    wallet_id: CanonicalUuid,
    client: Tenant,
    request: Request,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 50,
    since: Since = None,
    until: Until = None,
    transaction_type: Types = None,
    status: Statuses = None,
) -> dict:
    """The wallet's transactions, newest first, each with the balance after it; the next
    (older) page with ``cursor`` = ``next_cursor``. 422 INVALID_CURSOR; 404
    WALLET_NOT_FOUND; 403 WALLET_FORBIDDEN (neither the owner nor granted)."""
    wallet = await _readable_wallet(request, client, wallet_id)
    params = _filters(since, until, transaction_type, status)
    try:
        before_at, before_id = decode_cursor(cursor) if cursor else (None, None)
    except DomainError as error:
        raise Unprocessable(error.message, code=error.code) from None
    params.update(before_at=before_at, before_id=before_id, limit=limit + 1)
    rows = await _statement_rows(request, wallet_id, wallet.user_id, params)
    page = rows[:limit]
    last = page[-1] if len(rows) > limit else None
    return {
        "wallet_id": wallet_id,
        "entries": [_entry(wallet_id, row) for row in page],
        "next_cursor": None
        if last is None
        else encode_cursor(last["created_at"], last["transaction_id"]),
    }


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A cell a spreadsheet would run as a formula is quoted as text (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get(
    "/{wallet_id}/transactions.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "the statement as CSV"}},
)
async def statement_csv(
    wallet_id: CanonicalUuid,
    client: Tenant,
    request: Request,
    since: Since = None,
    until: Until = None,
    transaction_type: Types = None,
    status: Statuses = None,
) -> StreamingResponse:
    """The statement as CSV (newest first, at most 10,000 rows: narrow ``since``/``until``
    for more). Same filters and errors as the JSON statement."""
    wallet = await _readable_wallet(request, client, wallet_id)
    params = _filters(since, until, transaction_type, status)
    params.update(before_at=None, before_id=None, limit=CSV_ROWS_MAX)
    rows = await _statement_rows(request, wallet_id, wallet.user_id, params)

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            entry = _entry(wallet_id, row)
            writer.writerow([_csv_cell(entry[column]) for column in CSV_COLUMNS])
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    filename = f"statement-{wallet_id}.csv"
    return StreamingResponse(
        lines(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/{wallet_id}/status", response_model=WalletStatusOut)
async def change_status(
    wallet_id: CanonicalUuid, body: ChangeWalletStatus, client: Custodian, request: Request
) -> dict:
    """Freeze (debits refused at the stream, WALLET_FROZEN; credits still land), unfreeze
    (ACTIVE) or close (only an empty wallet; for good). Audited with who, when and why.
    Asking for the status the wallet has changes nothing and answers its last change.
    422 WALLET_NOT_EMPTY, WALLET_CLOSED, INVALID_FIELD; 403 WALLET_FORBIDDEN."""
    service = service_of(request)
    pool = service.repository.pool
    changed_by = f"{client.client_id}/{client.key_id}"
    now = datetime.now(UTC)
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        wallet = await visible_wallet(cur, client, wallet_id, owner_only=True, lock=True)
        if wallet.status != body.status:
            balance = await service.repository.balance(wallet_id, wallet.user_id)
            if balance is None:
                raise Unavailable(f"wallet {wallet_id} has no balance row", code="BALANCE_MISSING")
            posted = (
                balance["available_balance"]
                + balance["reserved_balance"]
                + balance["pending_balance"]
            )
            try:
                check_status_change(wallet.status, body.status, posted)
            except DomainError as error:
                raise Unprocessable(error.message, code=error.code) from None
            await cur.execute(
                """UPDATE wallets SET status = %s, updated_at = %s, version = version + 1
                    WHERE wallet_id = %s RETURNING version""",
                (body.status, now, wallet_id),
            )
            version = (await cur.fetchone())["version"]  # type: ignore[index]
            await cur.execute(
                """INSERT INTO wallet_status_changes (change_id, wallet_id, from_status,
                       to_status, changed_by, reason, changed_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (uuid.uuid4(), wallet_id, wallet.status, body.status, changed_by, body.reason, now),
            )
            announced = records.WalletStatusChanged(
                wallet_id=wallet_id,
                status=body.status,  # type: ignore[arg-type]
                version=version,
                changed_by=changed_by,
                reason=body.reason,
                changed_at=now,
            )
            await outbox.stage(cur, wallet_id, [announced])
        await cur.execute(
            """SELECT from_status, to_status, changed_by, reason, changed_at
                 FROM wallet_status_changes WHERE wallet_id = %s
                ORDER BY changed_at DESC LIMIT 1""",
            (wallet_id,),
        )
        last = await cur.fetchone()
    if last is None:
        raise Conflict(
            f"wallet {wallet_id} is {wallet.status} already and was never changed",
            code="STATUS_UNCHANGED",
        )
    await outbox.publish(pool, service.publisher, wallet_id)
    return {
        "wallet_id": wallet_id,
        "status": last["to_status"],
        "previous_status": last["from_status"],
        "changed_by": last["changed_by"],
        "reason": last["reason"],
        "changed_at": last["changed_at"],
    }


@router.get("/{wallet_id}/status-changes", response_model=list[StatusChangeOut])
async def status_changes(wallet_id: CanonicalUuid, client: Custodian, request: Request) -> list:
    """The wallet's status changes, the newest first (at most 100): the audit trail."""
    async with service_of(request).repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await visible_wallet(cur, client, wallet_id, owner_only=True)
        await cur.execute(
            """SELECT from_status, to_status, changed_by, reason, changed_at
                 FROM wallet_status_changes WHERE wallet_id = %s
                ORDER BY changed_at DESC LIMIT %s""",
            (wallet_id, STATUS_HISTORY_MAX),
        )
        return await cur.fetchall()

"""Refund requests: the payer asks, the payee's client decides.

Money leaves a wallet only on the word of the client in charge of it (its owner's client,
or a client it granted). So a payer whose money went into another client's wallet cannot
reverse the transfer itself (``403 REFUND_REQUEST_REQUIRED``); it files a refund request:

1. ``POST /v1/transactions/{id}/refund-requests`` (the payer's side: the client that
   submitted the original or is in charge of the wallet that paid) → 201, ``PENDING``;
2. the payee's client sees it in ``GET /v1/refund-requests?direction=incoming``;
3. ``POST /v1/refund-requests/{id}/grant`` (the payee's client) submits the reversal, as
   that client, paid from the payee's wallet → 202 with the reversal's ``transaction_id``;
   the stream holds the payee's funds and the ledger checks it against the original, as
   any reversal; or ``/refuse`` → ``REFUSED``; or the requester ``/cancel``s it first.

A grant records the reversal request and the decision in one PostgreSQL transaction and
publishes afterwards; a grant repeated (after a timeout, a 503) answers the same reversal
and publishes it again if it had not reached Kafka. A request never reserves money: the
amount is checked against what is left to reverse when it is made and again when granted.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from domain.access import KeyGrant
from domain.inputs import CanonicalUuid, MaskedNote
from domain.money import wire
from domain.reversals import RefundRoute
from ingest_api.deps import Tenant, service_of
from ingest_api.exceptions import Conflict, Forbidden, NotFound, Unprocessable
from ingest_api.reversals import (
    CreateReversal,
    fingerprint,
    load_original,
    parse_reversal_amount,
    reversal_record,
)
from ingest_api.schemas import TransactionAccepted
from ingest_api.service import IngestService, accepted_answer, checked_idempotency_key

router = APIRouter(tags=["refunds"])

LIST_ROWS_MAX = 500
_COLUMNS = """refund_request_id, original_transaction_id, requested_by, payee_wallet_id,
    payee_user_id, payer_wallet_id, amount, currency_code, reason, status, request_hash,
    decided_by, decision_note, decided_at, reversal_transaction_id, created_at"""
#: The payee's client: the owner's client of the wallet that pays back, or one it granted.
_PAYEE_CLIENT = """(EXISTS (SELECT 1 FROM api_client_users cu
                             WHERE cu.client_id = %(client)s AND cu.user_id = r.payee_user_id)
                    OR EXISTS (SELECT 1 FROM api_client_wallet_grants g
                                WHERE g.client_id = %(client)s
                                  AND g.wallet_id = r.payee_wallet_id))"""


class CreateRefundRequest(CreateReversal):
    """``amount`` to get back (at most what is left to reverse), ``description`` the reason."""


class RefundDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: MaskedNote | None = Field(default=None, max_length=1000)


class RefundRequestOut(BaseModel):
    refund_request_id: uuid.UUID
    original_transaction_id: uuid.UUID
    requested_by: uuid.UUID
    payee_wallet_id: uuid.UUID
    payer_wallet_id: uuid.UUID | None
    amount: str
    currency_code: str
    reason: str | None
    status: str
    decided_by: uuid.UUID | None
    decision_note: str | None
    decided_at: Any
    reversal_transaction_id: uuid.UUID | None
    created_at: Any


class RefundRequestList(BaseModel):
    refund_requests: list[RefundRequestOut]


class RefundGranted(BaseModel):
    refund_request: RefundRequestOut
    reversal: TransactionAccepted


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "amount": wire(row["amount"])}


@router.post(
    "/v1/transactions/{transaction_id}/refund-requests",
    status_code=201,
    response_model=RefundRequestOut,
)
async def request_refund(
    transaction_id: CanonicalUuid,
    body: CreateRefundRequest,
    client: Tenant,
    request: Request,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Ask the payee's client to refund (part of) a COMPLETED transaction. For the payer's
    side only; where this client pays back itself, it reverses directly (422
    ``REFUND_REQUEST_NOT_NEEDED``)."""
    service = service_of(request)
    idempotency_key = checked_idempotency_key(idempotency_key, "refund request")
    request_hash = fingerprint(transaction_id, body.model_dump())
    earlier = await _by_idempotency_key(service, client, idempotency_key)
    if earlier is not None:
        return _same_request(earlier, request_hash)
    original = await load_original(service, client, transaction_id)
    if original.route is not RefundRoute.REQUEST or original.paying_back is None:
        raise Unprocessable(
            f"this client pays {transaction_id} back itself: POST "
            f"/v1/transactions/{transaction_id}/reversals",
            code="REFUND_REQUEST_NOT_NEEDED",
        )
    amount = parse_reversal_amount(body.amount, original)
    async with service.repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"""INSERT INTO refund_requests (refund_request_id, original_transaction_id,
                    requested_by, payee_wallet_id, payee_user_id, payer_wallet_id, amount,
                    currency_code, reason, idempotency_key, request_hash)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (requested_by, idempotency_key) DO NOTHING
                RETURNING {_COLUMNS}""",
            (
                uuid.uuid4(),
                transaction_id,
                client.client_id,
                original.paying_back.wallet_id,
                original.paying_back.user_id,
                original.destination,
                amount,
                original.row["currency_code"],
                body.description,
                idempotency_key,
                request_hash,
            ),
        )
        row = await cur.fetchone()
    if row is None:  # the same key raced in from a concurrent request
        raced = await _by_idempotency_key(service, client, idempotency_key)
        assert raced is not None
        return _same_request(raced, request_hash)
    return _out(row)


@router.get("/v1/refund-requests", response_model=RefundRequestList)
async def list_refund_requests(
    client: Tenant,
    request: Request,
    direction: Annotated[
        Literal["incoming", "outgoing"],
        Query(description="incoming: to decide (you pay back); outgoing: yours"),
    ] = "incoming",
    status: Annotated[
        Literal["PENDING", "GRANTED", "REFUSED", "CANCELLED"] | None, Query()
    ] = "PENDING",
) -> dict[str, Any]:
    """Refund requests this client decides (incoming) or made (outgoing), oldest first."""
    mine = _PAYEE_CLIENT if direction == "incoming" else "r.requested_by = %(client)s"
    async with service_of(request).repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM refund_requests r
                 WHERE {mine} AND (%(status)s::text IS NULL OR r.status = %(status)s)
                 ORDER BY r.created_at, r.refund_request_id LIMIT %(limit)s""",
            {"client": client.client_id, "status": status, "limit": LIST_ROWS_MAX},
        )
        rows = await cur.fetchall()
    return {"refund_requests": [_out(row) for row in rows]}


@router.get("/v1/refund-requests/{refund_request_id}", response_model=RefundRequestOut)
async def get_refund_request(
    refund_request_id: CanonicalUuid, client: Tenant, request: Request
) -> dict[str, Any]:
    row, _payee = await _visible(service_of(request), client, refund_request_id)
    return _out(row)


@router.post(
    "/v1/refund-requests/{refund_request_id}/grant",
    status_code=202,
    response_model=RefundGranted,
)
async def grant_refund(
    refund_request_id: CanonicalUuid,
    client: Tenant,
    request: Request,
    body: RefundDecision | None = None,
    user_agent: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """The payee's client grants: the reversal is submitted as this client, from the
    payee's wallet (202, like any transaction; follow its ``transaction_id``)."""
    service = service_of(request)
    row = await _decidable(service, client, refund_request_id)
    if row["status"] == "GRANTED":
        return await _granted_again(service, row)
    original = await load_original(service, client, row["original_transaction_id"])
    if original.route is not RefundRoute.REVERSE:
        raise Forbidden("only the payee's client decides", code="REFUND_DECISION_FORBIDDEN")
    original.check_amount(row["amount"])
    reason = f": {row['reason']}" if row["reason"] else ""
    record = reversal_record(
        original,
        client,
        row["amount"],
        f"refund of {original.transaction_id}{reason}"[:1000],
        f"refund-request:{refund_request_id}",
        request.client.host if request.client else None,
        user_agent,
    )
    as_json = record.model_dump(mode="json")
    async with service.repository.pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT status FROM refund_requests WHERE refund_request_id = %s FOR UPDATE",
            (refund_request_id,),
        )
        locked = await cur.fetchone()
        assert locked is not None
        if locked["status"] != "PENDING":  # decided by a concurrent call
            raise Conflict(
                f"the request was {locked['status']} already", code="REFUND_REQUEST_DECIDED"
            )
        if not await service.repository.record_request(
            client.client_id,
            record.idempotency_key,
            row["request_hash"],
            record.transaction_id,
            as_json,
            record.requested_at,
            conn=conn,
        ):
            raise Conflict("the request is being granted", code="REFUND_REQUEST_DECIDED")
        await cur.execute(
            f"""UPDATE refund_requests r SET status = 'GRANTED', decided_by = %s,
                       decision_note = %s, decided_at = now(), reversal_transaction_id = %s
                 WHERE refund_request_id = %s RETURNING {_COLUMNS}""",
            (client.client_id, body and body.note, record.transaction_id, refund_request_id),
        )
        granted = await cur.fetchone()
    await service.publish(record)  # the same publishing as every request
    return _granted_response(granted, accepted_answer(as_json))


@router.post("/v1/refund-requests/{refund_request_id}/refuse", response_model=RefundRequestOut)
async def refuse_refund(
    refund_request_id: CanonicalUuid,
    client: Tenant,
    request: Request,
    body: RefundDecision | None = None,
) -> dict[str, Any]:
    """The payee's client refuses; nothing moves."""
    service = service_of(request)
    await _decidable(service, client, refund_request_id)
    return await _close(service, refund_request_id, "REFUSED", client, body and body.note)


@router.post("/v1/refund-requests/{refund_request_id}/cancel", response_model=RefundRequestOut)
async def cancel_refund(
    refund_request_id: CanonicalUuid, client: Tenant, request: Request
) -> dict[str, Any]:
    """The requester withdraws its request while it is PENDING."""
    service = service_of(request)
    row, _payee = await _visible(service, client, refund_request_id)
    if row["requested_by"] != client.client_id:
        raise Forbidden("only the requester cancels", code="REFUND_DECISION_FORBIDDEN")
    return await _close(service, refund_request_id, "CANCELLED", client, None)


async def _by_idempotency_key(
    service: IngestService, client: KeyGrant, idempotency_key: str
) -> dict[str, Any] | None:
    async with service.repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM refund_requests
                 WHERE requested_by = %s AND idempotency_key = %s""",
            (client.client_id, idempotency_key),
        )
        return await cur.fetchone()


def _same_request(earlier: dict[str, Any], request_hash: str) -> dict[str, Any]:
    if earlier["request_hash"] != request_hash:
        raise Conflict(
            "this Idempotency-Key was used for a different request",
            code="IDEMPOTENCY_KEY_REUSED",
        )
    return _out(earlier)


async def _visible(
    service: IngestService, client: KeyGrant, refund_request_id: uuid.UUID
) -> tuple[dict[str, Any], bool]:
    """The request and whether the caller is the payee's client; 404 unless it is that
    or the requester."""
    async with service.repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"""SELECT {_COLUMNS}, {_PAYEE_CLIENT} AS payee_client FROM refund_requests r
                 WHERE refund_request_id = %(id)s""",
            {"id": refund_request_id, "client": client.client_id},
        )
        row = await cur.fetchone()
    if row is None or not (row["payee_client"] or row["requested_by"] == client.client_id):
        raise NotFound(f"no refund request {refund_request_id}", code="REFUND_REQUEST_NOT_FOUND")
    return row, bool(row.pop("payee_client"))


async def _decidable(
    service: IngestService, client: KeyGrant, refund_request_id: uuid.UUID
) -> dict[str, Any]:
    row, payee = await _visible(service, client, refund_request_id)
    if not payee:
        raise Forbidden(
            "only the payee's client grants or refuses", code="REFUND_DECISION_FORBIDDEN"
        )
    if row["status"] not in ("PENDING", "GRANTED"):
        raise Conflict(f"the request was {row['status']} already", code="REFUND_REQUEST_DECIDED")
    return row


async def _close(
    service: IngestService,
    refund_request_id: CanonicalUuid,
    status: str,
    client: KeyGrant,
    note: str | None,
) -> dict[str, Any]:
    async with service.repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"""UPDATE refund_requests SET status = %s, decided_by = %s, decision_note = %s,
                       decided_at = now()
                 WHERE refund_request_id = %s AND status = 'PENDING' RETURNING {_COLUMNS}""",
            (status, client.client_id, note, refund_request_id),
        )
        row = await cur.fetchone()
        if row is None:
            await cur.execute(
                "SELECT status FROM refund_requests WHERE refund_request_id = %s",
                (refund_request_id,),
            )
            now = await cur.fetchone()
            raise Conflict(
                f"the request was {now and now['status']} already", code="REFUND_REQUEST_DECIDED"
            )
    return _out(row)


async def _granted_again(service: IngestService, row: dict[str, Any]) -> JSONResponse:
    """A repeated grant: the same reversal, published again if it had not been."""
    earlier = await service.repository.accepted_request_by_id(row["reversal_transaction_id"])
    assert earlier is not None  # recorded in the grant's own transaction
    answer = await service.replay(earlier, earlier.request_hash)
    return _granted_response(row, answer)


def _granted_response(row: dict[str, Any], answer: dict[str, Any]) -> JSONResponse:
    body = RefundGranted.model_validate({"refund_request": _out(row), "reversal": answer})
    return JSONResponse(
        status_code=202,
        content=body.model_dump(mode="json"),
        headers={"Location": f"/v1/transactions/{answer['transaction_id']}"},
    )

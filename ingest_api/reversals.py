"""``POST /v1/transactions/{id}/reversals``: reverse (refund) a completed transaction, in full
or in part.

The reversal is a transaction of its own, the mirror of the original (domain/reversals.py),
with no fee and ``metadata.reversal_of``. It goes through the stream like any request, keyed
by the wallet that pays back, so that wallet's funds are held first and it can never go
negative; the ledger then checks it against the original (completed, same wallets and
currency, never more than what moved minus what was reversed) and posts it, or fails it
with a reason. Only the API client that submitted the original may reverse it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from domain import records
from domain.exceptions import DomainError
from domain.money import parse_amount
from domain.reversals import REVERSAL_OF, ReversalReason, mirror
from domain.transactions import TransactionType
from ingest_api import ledger_view, outages
from ingest_api.exceptions import Conflict, NotFound, Unprocessable
from ingest_api.repository import Client, Repository
from ingest_api.schemas import TransactionAccepted
from ingest_api.service import IDEMPOTENCY_KEY_LENGTH_MAX, IngestService, accepted_answer

router = APIRouter()


def _service(request: Request) -> IngestService:
    return request.app.state.service  # type: ignore[no-any-return]


async def _caller(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> Client:
    return await _service(request).authenticate(x_api_key)


class CreateReversal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: str = Field(max_length=40)
    description: str | None = Field(default=None, max_length=1000)


@router.post(
    "/v1/transactions/{transaction_id}/reversals",
    status_code=202,
    response_model=TransactionAccepted,
)
async def create_reversal(
    transaction_id: uuid.UUID,
    body: CreateReversal,
    request: Request,
    client: Annotated[Client, Depends(_caller)],
    idempotency_key: Annotated[str | None, Header()] = None,
    user_agent: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    service = _service(request)
    if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_LENGTH_MAX:
        raise Unprocessable(
            "send an Idempotency-Key header (unique per reversal, at most 255 characters)",
            code="MISSING_IDEMPOTENCY_KEY",
        )
    canonical = json.dumps(
        {"reversal_of": str(transaction_id), **body.model_dump()}, sort_keys=True
    )
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    repository = service._repository  # noqa: SLF001 - the same store as every request
    earlier = await repository.accepted_request(client.client_id, idempotency_key)
    if earlier is not None:
        return _accepted(await service._replay(earlier, fingerprint))  # noqa: SLF001
    original = await _original(repository, client.client_id, transaction_id)
    try:
        amount = parse_amount(body.amount, original["currency_code"])
    except DomainError as error:
        raise Unprocessable(error.message, code=error.code) from None
    if amount > original["moved"] - original["reversed"]:
        raise Unprocessable(
            f"only {original['moved'] - original['reversed']} {original['currency_code']} of "
            f"{transaction_id} is left to reverse",
            code=ReversalReason.EXCEEDS_ORIGINAL,
        )
    kind, source, destination = mirror(
        TransactionType(original["transaction_type"]),
        original["source_wallet_id"],
        original["destination_wallet_id"],
    )
    wallets = await service._wallet_access(  # noqa: SLF001
        client, [w for w in (source, destination) if w]
    )
    payer = wallets.get(source) if source else None
    payee = wallets.get(destination) if destination else None
    record = records.TransactionRequested(
        transaction_id=uuid.uuid4(),
        transaction_type=kind,
        source_wallet_id=source,
        destination_wallet_id=destination,
        source_user_id=payer.user_id if payer else None,
        destination_user_id=payee.user_id if payee else None,
        kyc_status=(payer or payee).kyc_status if (payer or payee) else None,
        amount=amount,
        fee_amount=Decimal(0),
        total_amount=amount,
        currency_code=original["currency_code"],
        description=body.description or f"reversal of {transaction_id}",
        client_id=client.client_id,
        idempotency_key=idempotency_key,
        ip_address=request.client.host if request.client else None,
        user_agent=(user_agent or None) and user_agent[:500],
        metadata={REVERSAL_OF: str(transaction_id), "external_reference_id": str(transaction_id)},
        requested_at=datetime.now(UTC),
    )
    as_json = record.model_dump(mode="json")
    with outages.recording():
        stored = await repository.record_request(
            client.client_id,
            idempotency_key,
            fingerprint,
            record.transaction_id,
            as_json,
            record.requested_at,
        )
    if not stored:  # the same key raced in from a concurrent request
        earlier = await repository.accepted_request(client.client_id, idempotency_key)
        if earlier is None:
            raise Conflict("the Idempotency-Key is being used", code="IDEMPOTENCY_KEY_REUSED")
        return _accepted(await service._replay(earlier, fingerprint))  # noqa: SLF001
    await service._publish(record)  # noqa: SLF001
    return _accepted(accepted_answer(as_json))


def _accepted(answer: dict[str, Any]) -> JSONResponse:
    content = TransactionAccepted.model_validate(answer).model_dump(mode="json")
    return JSONResponse(
        status_code=202,
        content=content,
        headers={"Location": f"/v1/transactions/{answer['transaction_id']}"},
    )


_ORIGINAL_SQL = """SELECT t.transaction_type, t.transaction_status, t.source_wallet_id,
                          t.destination_wallet_id, t.currency_code,
                          coalesce(h.captured_amount, t.amount) AS moved,
                          (SELECT coalesce(sum(r.amount), 0) FROM ledger_reversals r
                            WHERE r.original_id = t.transaction_id) AS reversed
                     FROM transactions t LEFT JOIN ledger_holds h USING (transaction_id)
                    WHERE t.transaction_id = %s"""


async def _original(
    repository: Repository, client_id: uuid.UUID, transaction_id: uuid.UUID
) -> dict[str, Any]:
    """The original as the ledger wrote it, if this client submitted it; else 404/409.
    With shards it is read where the reversal will post: the payee's shard."""
    async with repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT record FROM transaction_requests WHERE transaction_id = %s AND client_id = %s",
            (transaction_id, client_id),
        )
        request = await cur.fetchone()
    row = None
    if request is not None:
        shard = ledger_view.payee_shard(repository.shards, request["record"])
        async with repository.ledger_pool(shard).connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(_ORIGINAL_SQL, (transaction_id,))
            row = await cur.fetchone()
    if row is None:
        raise NotFound(
            f"transaction {transaction_id} does not exist or is not posted yet",
            code="TRANSACTION_NOT_FOUND",
        )
    if row["transaction_status"] != "COMPLETED":
        raise Conflict(
            f"transaction {transaction_id} is {row['transaction_status']}: only a COMPLETED "
            "transaction can be reversed",
            code=ReversalReason.NOT_REVERSIBLE,
        )
    return row

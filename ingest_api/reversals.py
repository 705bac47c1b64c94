"""``POST /v1/transactions/{id}/reversals``: reverse (refund) a completed transaction, in full
or in part, by the client in charge of the wallet that pays back.

The reversal is a transaction of its own, the mirror of the original (domain/reversals.py),
with no fee and ``metadata.reversal_of``. It goes through the stream like any request, keyed
by the wallet that pays back, so that wallet's funds are held first and it can never go
negative; the ledger then checks it against the original (completed, same wallets and
currency, never more than what moved minus what was reversed) and posts it, or fails it
with a reason.

Only the wallet that pays back moves its money (``domain.reversals.refund_route``): the
payee's client (its owner's, or a client it granted) reverses directly, e.g. a merchant
refunding a customer; the payer's client gets ``403 REFUND_REQUEST_REQUIRED`` and asks the
payee with a refund request (ingest_api/refunds.py), which the payee's client grants or
refuses. This module also builds the reversal those grants submit.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from domain import records
from domain.access import KeyGrant
from domain.exceptions import DomainError
from domain.inputs import CanonicalUuid, MaskedText
from domain.money import AMOUNT_PATTERN, parse_amount
from domain.reversals import REVERSAL_OF, RefundRoute, ReversalReason, mirror, refund_route
from domain.transactions import TransactionType
from ingest_api import ledger_view, outages
from ingest_api.deps import Tenant, service_of
from ingest_api.exceptions import Conflict, Forbidden, NotFound, Unprocessable
from ingest_api.repository import Repository, WalletAccess
from ingest_api.schemas import TransactionAccepted
from ingest_api.service import IngestService, accepted_answer, checked_idempotency_key

router = APIRouter()


class CreateReversal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Checked by parse_amount against the original's currency (INVALID_AMOUNT).
    amount: str = Field(max_length=40, json_schema_extra={"pattern": AMOUNT_PATTERN})
    description: MaskedText | None = Field(default=None, max_length=1000)


@dataclass(frozen=True)
class Original:
    """A completed transaction as the ledger wrote it, its reversal's shape, and how the
    caller stands to the wallets of that reversal."""

    transaction_id: uuid.UUID
    row: dict[str, Any]
    submitted_by: uuid.UUID
    kind: TransactionType
    source: uuid.UUID | None  # the reversal's: the wallet that pays back, if any
    destination: uuid.UUID | None  # the reversal's: the wallet paid back, if any
    paying_back: WalletAccess | None  # the source's facts, for the caller
    paid_back: WalletAccess | None  # the destination's
    route: RefundRoute

    @property
    def left(self) -> Decimal:
        return self.row["moved"] - self.row["reversed"]  # type: ignore[no-any-return]

    def check_amount(self, amount: Decimal) -> None:
        if amount > self.left:
            raise Unprocessable(
                f"only {self.left} {self.row['currency_code']} of {self.transaction_id} is "
                "left to reverse",
                code=ReversalReason.EXCEEDS_ORIGINAL,
            )


def parse_reversal_amount(value: str, original: Original) -> Decimal:
    try:
        amount = parse_amount(value, original.row["currency_code"])
    except DomainError as error:
        raise Unprocessable(error.message, code=error.code) from None
    original.check_amount(amount)
    return amount


def fingerprint(transaction_id: uuid.UUID, body: dict[str, Any]) -> str:
    canonical = json.dumps({"reversal_of": str(transaction_id), **body}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def accepted_response(answer: dict[str, Any]) -> JSONResponse:
    content = TransactionAccepted.model_validate(answer).model_dump(mode="json")
    return JSONResponse(
        status_code=202,
        content=content,
        headers={"Location": f"/v1/transactions/{answer['transaction_id']}"},
    )


@router.post(
    "/v1/transactions/{transaction_id}/reversals",
    status_code=202,
    response_model=TransactionAccepted,
)
async def create_reversal(
    transaction_id: CanonicalUuid,
    body: CreateReversal,
    request: Request,
    client: Tenant,
    idempotency_key: Annotated[str | None, Header()] = None,
    user_agent: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Reverse a COMPLETED transaction, in full or in part, from the wallet that pays it
    back; only that wallet's client may (403 ``REFUND_REQUEST_REQUIRED`` for the payer's:
    POST /v1/transactions/{id}/refund-requests instead)."""
    service = service_of(request)
    idempotency_key = checked_idempotency_key(idempotency_key, "reversal")
    request_hash = fingerprint(transaction_id, body.model_dump())
    earlier = await service.repository.accepted_request(client.client_id, idempotency_key)
    if earlier is not None:
        return accepted_response(await service.replay(earlier, request_hash))
    original = await load_original(service, client, transaction_id)
    if original.route is RefundRoute.REQUEST:
        raise Forbidden(
            f"the money of {transaction_id} is paid back from a wallet of another client: ask "
            f"for it with POST /v1/transactions/{transaction_id}/refund-requests",
            code=ReversalReason.REQUEST_REQUIRED,
        )
    amount = parse_reversal_amount(body.amount, original)
    record = reversal_record(
        original,
        client,
        amount,
        body.description,
        idempotency_key,
        request.client.host if request.client else None,
        user_agent,
    )
    as_json = record.model_dump(mode="json")
    with outages.recording():
        stored = await service.repository.record_request(
            client.client_id,
            idempotency_key,
            request_hash,
            record.transaction_id,
            as_json,
            record.requested_at,
        )
    if not stored:  # the same key raced in from a concurrent request
        earlier = await service.repository.accepted_request(client.client_id, idempotency_key)
        if earlier is None:
            raise Conflict("the Idempotency-Key is being used", code="IDEMPOTENCY_KEY_REUSED")
        return accepted_response(await service.replay(earlier, request_hash))
    await service.publish(record)
    return accepted_response(accepted_answer(as_json))


def reversal_record(
    original: Original,
    client: KeyGrant,
    amount: Decimal,
    description: str | None,
    idempotency_key: str,
    ip_address: str | None,
    user_agent: str | None,
) -> records.TransactionRequested:
    payer, payee = original.paying_back, original.paid_back
    return records.TransactionRequested(
        transaction_id=uuid.uuid4(),
        transaction_type=original.kind,
        source_wallet_id=original.source,
        destination_wallet_id=original.destination,
        source_user_id=payer.user_id if payer else None,
        destination_user_id=payee.user_id if payee else None,
        kyc_status=(payer or payee).kyc_status if (payer or payee) else None,
        amount=amount,
        fee_amount=Decimal(0),
        total_amount=amount,
        currency_code=original.row["currency_code"],
        description=description or f"reversal of {original.transaction_id}",
        client_id=client.client_id,
        idempotency_key=idempotency_key,
        ip_address=ip_address,
        user_agent=(user_agent or None) and user_agent[:500],
        metadata={
            REVERSAL_OF: str(original.transaction_id),
            "external_reference_id": str(original.transaction_id),
        },
        requested_at=datetime.now(UTC),
    )


_ORIGINAL_SQL = """SELECT t.transaction_type, t.transaction_status, t.source_wallet_id,
                          t.destination_wallet_id, t.currency_code,
                          coalesce(h.captured_amount, t.amount) AS moved,
                          (SELECT coalesce(sum(r.amount), 0) FROM ledger_reversals r
                            WHERE r.original_id = t.transaction_id) AS reversed
                     FROM transactions t LEFT JOIN ledger_holds h USING (transaction_id)
                    WHERE t.transaction_id = %s"""


async def load_original(
    service: IngestService, client: KeyGrant, transaction_id: uuid.UUID
) -> Original:
    """The original and the caller's standing; 404 for a caller with no part in it (as
    for one that does not exist), 409 unless it is COMPLETED. With shards it is read where
    the reversal will post: the payee's shard."""
    repository = service.repository
    request, row = await _request_and_row(repository, transaction_id)
    missing = NotFound(
        f"transaction {transaction_id} does not exist or is not posted yet",
        code="TRANSACTION_NOT_FOUND",
    )
    if request is None or row is None:
        raise missing
    kind, source, destination = mirror(
        TransactionType(row["transaction_type"]),
        row["source_wallet_id"],
        row["destination_wallet_id"],
    )
    wallets = await service.wallet_access(client, [w for w in (source, destination) if w])
    paying_back = wallets.get(source) if source else None
    paid_back = wallets.get(destination) if destination else None
    submitted_by = uuid.UUID(str(request["record"]["client_id"]))
    route = refund_route(
        source,
        bool(paying_back and paying_back.allowed),
        bool(paid_back and paid_back.allowed),
        submitted_by == client.client_id,
    )
    if route is RefundRoute.NONE:
        if submitted_by == client.client_id:
            raise Forbidden(
                f"this client is no longer in charge of the wallets of {transaction_id}",
                code="WALLET_FORBIDDEN",
            )
        raise missing
    if row["transaction_status"] != "COMPLETED":
        raise Conflict(
            f"transaction {transaction_id} is {row['transaction_status']}: only a COMPLETED "
            "transaction can be reversed",
            code=ReversalReason.NOT_REVERSIBLE,
        )
    return Original(
        transaction_id, row, submitted_by, kind, source, destination, paying_back, paid_back, route
    )


async def _request_and_row(
    repository: Repository, transaction_id: uuid.UUID
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    async with repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT record FROM transaction_requests WHERE transaction_id = %s",
            (transaction_id,),
        )
        request = await cur.fetchone()
    if request is None:
        return None, None
    shard = ledger_view.payee_shard(repository.shards, request["record"])
    async with repository.ledger_pool(shard).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_ORIGINAL_SQL, (transaction_id,))
        return request, await cur.fetchone()

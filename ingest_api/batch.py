"""``POST /v1/transactions/batch``: up to 1,000 transactions in one request, each alone.

Each item carries its own Idempotency-Key and gets its own answer, in order: accepted
(202, the answer the single endpoint gives) or refused with the status and code the
single endpoint would give it (422 ``INVALID_AMOUNT``, 404 ``WALLET_NOT_FOUND``, 409
``IDEMPOTENCY_KEY_REUSED``, ...). One bad item refuses only itself. The batch shares its
work: one look-up of the wallets not cached, one INSERT of all accepted items (the
recorder's), their publishes awaited together, so an item costs a fraction of a request.

What refuses the whole request: no or a bad API key, a body that is not JSON, not
``{"transactions": [...]}`` or has more than 1,000 items, and PostgreSQL away (503, as
the single endpoint: NOT_ACCEPTED before recording, OUTCOME_UNKNOWN while recording). Kafka
not acknowledging an item answers that item 503 ``UNAVAILABLE_OUTCOME_UNKNOWN``; it is
recorded and the relay publishes it. A batch takes one token of the rate limit.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError, WithJsonSchema

from domain import records
from domain.access import KeyGrant
from ingest_api import outages
from ingest_api.deps import Tenant, service_of
from ingest_api.errors import validation_refusal
from ingest_api.exceptions import ApiError, Unprocessable
from ingest_api.schemas import CreateTransaction, ErrorDetail, Strict, TransactionAccepted
from ingest_api.service import IngestService, checked_idempotency_key, request_fingerprint
from ingest_api.submission import accepted_answer_of, json_response, to_record

BATCH_ITEMS_MAX = 1_000
router = APIRouter()

#: An item as documented; the route reads items one by one, so one that breaks this
#: schema is refused alone (with the code the single endpoint would answer).
BATCH_ITEM_SCHEMA = {
    "type": "object",
    "properties": {
        "idempotency_key": {"type": "string", "maxLength": 255, "pattern": "^[ -~]+$"},
        "transaction": {"$ref": "#/components/schemas/CreateTransaction"},
    },
    "required": ["idempotency_key", "transaction"],
    "additionalProperties": False,
}


class TransactionBatch(Strict):
    transactions: list[Annotated[Any, WithJsonSchema(BATCH_ITEM_SCHEMA)]] = Field(
        min_length=1, max_length=BATCH_ITEMS_MAX
    )


class BatchItemOut(BaseModel):
    #: 202: accepted (``transaction``); otherwise the refusal's HTTP status (``error``).
    status: int
    idempotency_key: str | None
    transaction: TransactionAccepted | None = None
    error: ErrorDetail | None = None


class BatchOut(BaseModel):
    accepted: int
    refused: int
    #: One per item, in the order sent.
    items: list[BatchItemOut]


@dataclass
class _Item:
    index: int
    idempotency_key: str
    fingerprint: str
    body: CreateTransaction
    record: records.TransactionRequested | None = None


def _refused(key: str | None, error: ApiError) -> dict[str, Any]:
    return {
        "status": error.status_code,
        "idempotency_key": key,
        "error": {"code": error.code, "message": error.message},
    }


def _accepted(key: str, answer: dict[str, Any]) -> dict[str, Any]:
    return {"status": 202, "idempotency_key": key, "transaction": answer}


def decode_item(raw: Any) -> tuple[str, CreateTransaction]:
    """An item's key and transaction, or the ``ApiError`` the single endpoint would give."""
    if not isinstance(raw, dict):
        raise Unprocessable(
            "an item is an object: {idempotency_key, transaction}", code="INVALID_FIELD"
        )
    unknown = sorted(set(raw) - {"idempotency_key", "transaction"})
    if unknown:
        raise Unprocessable(f"unknown field {unknown[0]!r}", code="UNKNOWN_FIELD")
    key = raw.get("idempotency_key")
    if key is not None and not isinstance(key, str):
        raise Unprocessable(
            "Idempotency-Key must be printable ASCII", code="INVALID_IDEMPOTENCY_KEY"
        )
    key = checked_idempotency_key(key, "transaction")
    if "transaction" not in raw:
        raise Unprocessable("field 'transaction' is required", code="MISSING_FIELD")
    try:
        return key, CreateTransaction.model_validate(raw["transaction"])
    except ValidationError as error:
        status, code, message = validation_refusal(error.errors())
        raise ApiError(message, code=code, status_code=status) from None


@outages.nothing_recorded  # until the items are recorded; see ingest_api.outages
async def submit_batch(
    service: IngestService,
    client: KeyGrant,
    raw_items: list[Any],
    ip_address: str | None,
    user_agent: str | None,
) -> list[dict[str, Any]]:
    answers: list[dict[str, Any] | None] = [None] * len(raw_items)
    items: list[_Item] = []
    for index, raw in enumerate(raw_items):
        key = raw.get("idempotency_key") if isinstance(raw, dict) else None
        try:
            key, body = decode_item(raw)
        except ApiError as error:
            answers[index] = _refused(key if isinstance(key, str) else None, error)
            continue
        items.append(_Item(index, key, request_fingerprint(body), body))
    wallet_ids = list(
        {w for i in items for w in (i.body.source_wallet_id, i.body.destination_wallet_id) if w}
    )
    wallets = await service.wallet_access(client, wallet_ids) if wallet_ids else {}
    refusals: dict[int, ApiError] = {}
    for item in items:
        try:
            item.record = await service.checked_record(
                client, item.body, item.idempotency_key, ip_address, user_agent, wallets
            )
        except ApiError as error:
            refusals[item.index] = error
    await _answer_refusals(service, client, items, refusals, answers)
    to_publish = [item for item in items if item.record is not None]
    encoded = [records.encode(item.record) for item in to_publish if item.record is not None]
    with outages.recording():
        recorded = await service.recorder.record_many(
            [
                to_record(item.record, item.fingerprint, raw)
                for item, raw in zip(to_publish, encoded, strict=True)
                if item.record is not None
            ]
        )
    publishes = []
    for item, raw, earlier in zip(to_publish, encoded, recorded, strict=True):
        assert item.record is not None
        if earlier is None:
            publishes.append((item, service.publish(item.record, raw)))
        else:
            publishes.append((item, service.replay(earlier, item.fingerprint)))
    outcomes = await asyncio.gather(*(work for _item, work in publishes), return_exceptions=True)
    for (item, _work), outcome in zip(publishes, outcomes, strict=True):
        if isinstance(outcome, ApiError):
            answers[item.index] = _refused(item.idempotency_key, outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        elif isinstance(outcome, dict):  # a replay's answer
            answers[item.index] = _accepted(item.idempotency_key, outcome)
        else:
            assert item.record is not None
            answers[item.index] = _accepted(item.idempotency_key, accepted_answer_of(item.record))
    return [answer for answer in answers if answer is not None]


async def _answer_refusals(
    service: IngestService,
    client: KeyGrant,
    items: list[_Item],
    refusals: dict[int, ApiError],
    answers: list[dict[str, Any] | None],
) -> None:
    """A refused item whose key was accepted before gets the first answer, as the single
    endpoint gives it; the look-up is one statement for all refused items."""
    if not refusals:
        return
    refused = [item for item in items if item.index in refusals]
    earlier = await service.repository.accepted_requests(
        client.client_id, [item.idempotency_key for item in refused]
    )
    for item in refused:
        found = earlier.get(item.idempotency_key)
        if found is None:
            answers[item.index] = _refused(item.idempotency_key, refusals[item.index])
            continue
        try:
            answer = await service.replay(found, item.fingerprint)
        except ApiError as error:
            answers[item.index] = _refused(item.idempotency_key, error)
        else:
            answers[item.index] = _accepted(item.idempotency_key, answer)


@router.post("/v1/transactions/batch", response_model=BatchOut)
async def create_transactions(
    body: TransactionBatch,
    client: Tenant,
    request: Request,
    user_agent: Annotated[str | None, Header()] = None,
) -> Response:
    """Accept up to 1,000 transactions, each with its own `idempotency_key`; 200 with one
    answer per item, in order: `status` 202 and the accepted `transaction` (as
    `POST /v1/transactions` answers it), or the status and `error` that endpoint would
    give the item. One bad item refuses only itself; a repeated key gets its first answer."""
    ip = request.client.host if request.client else None
    answered = await submit_batch(service_of(request), client, body.transactions, ip, user_agent)
    accepted = sum(1 for answer in answered if answer["status"] == 202)
    content = {"accepted": accepted, "refused": len(answered) - accepted, "items": answered}
    return json_response(200, content, {})

"""What accepting a transaction produces: its id, its stored row, its answers.

Shared by the single and the batch endpoint (ingest_api.service, ingest_api.batch).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.responses import Response

from domain import records
from domain.money import wire
from domain.transactions import TransactionStatus
from ingest_api.outcomes import Outcome
from ingest_api.recorder import RequestToRecord

#: Namespace of the transaction ids derived from (client, Idempotency-Key).
REQUEST_ID_NAMESPACE = uuid.UUID("6d1f2c1e-54a8-4f43-9c55-3f1f0b7a2e10")


def request_transaction_id(client_id: uuid.UUID, idempotency_key: str) -> uuid.UUID:
    """Deterministic: every repeat of a (client, Idempotency-Key), in whichever process and
    however often it is published, carries the same id, which the stream and the ledger
    accept once."""
    return uuid.uuid5(REQUEST_ID_NAMESPACE, f"{client_id}/{idempotency_key}")


def to_record(
    record: records.TransactionRequested, fingerprint: str, encoded: bytes
) -> RequestToRecord:
    return RequestToRecord(
        record.transaction_id,
        record.client_id,
        record.idempotency_key,
        fingerprint,
        encoded.decode(),
        record.requested_at,
    )


@dataclass(frozen=True)
class Submitted:
    """The answer to a submitted request, and its record when this call published it (a
    repeat of an earlier request has none: it answers at once)."""

    answer: dict[str, Any]
    record: records.TransactionRequested | None
    #: Whether the caller's ``Prefer: wait`` was honoured, and the outcome if it came in time.
    waited: bool = False
    outcome: Outcome | None = None


def accepted_answer_of(record: records.TransactionRequested) -> dict[str, Any]:
    return {
        "transaction_id": record.transaction_id,
        "transaction_status": TransactionStatus.PENDING.value,
        "status": TransactionStatus.PENDING.value,
        "transaction_type": record.transaction_type.value,
        "amount": wire(record.amount),
        "fee_amount": wire(record.fee_amount),
        "total_amount": wire(record.total_amount),
        "currency_code": record.currency_code,
        "created_at": record.requested_at,
    }


def ended_answer(answer: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """The accepted answer brought to the transaction's final state."""
    return {
        **answer,
        "transaction_status": outcome.transaction_status,
        "status": outcome.transaction_status,
        "risk_score": outcome.risk_score,
        "failure_code": outcome.failure_code,
        "failure_reason": outcome.failure_reason,
        "completed_at": outcome.completed_at,
        "captured_amount": outcome.captured_amount,
    }


def json_response(status: int, content: Any, headers: dict[str, str]) -> Response:
    """JSON written by orjson: ids as text, times in ISO-8601 with ``Z`` as pydantic writes
    them, without a validation pass over an answer the service built itself."""
    return Response(
        orjson.dumps(content, option=orjson.OPT_UTC_Z),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )

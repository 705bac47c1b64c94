"""Identity documents (KYC): the user's app uploads them, compliance decides.

* ``POST /v1/users/{id}/kyc-documents`` (the user's client): a PASSPORT, DRIVERS_LICENSE
  or ID_CARD as PDF, JPEG or PNG of at most 10 MB, base64 in JSON; its type is read from
  its bytes, never from a name. The bytes go to the document store
  (``ingest_api.document_store``), the metadata to ``kyc_documents`` (PENDING).
* ``GET /v1/users/{id}/kyc-documents`` (the user's client): the metadata, never the bytes.
* ``GET /v1/kyc-documents`` / ``.../{id}/content`` (compliance only): the queue and a file.
* ``POST /v1/kyc-documents/{id}/approve`` / ``reject`` (compliance only, a reason to reject):
  the document and the user's ``kyc_status`` change (PENDING → VERIFIED / REJECTED) in one
  transaction with a ``KycStatusChanged`` for each of the user's wallets, published once
  committed: the stream applies the status's default limits to the next request.

No document's bytes or number reach a log, Kafka record or error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from psycopg.rows import dict_row
from pydantic import Field

from domain import records
from domain.customers import DOCUMENT_BYTES_MAX, DocumentType, sniff_document
from domain.inputs import CanonicalUuid, PlainText
from domain.limits import KycStatus
from ingest_api import outbox
from ingest_api.customer_schemas import DecideDocument, DocumentOut, KycDecisionOut
from ingest_api.deps import Compliance, Onboarder, service_of
from ingest_api.document_store import DocumentStore
from ingest_api.exceptions import ApiError, Conflict, NotFound, Unprocessable
from ingest_api.limit_store import WALLETS_PER_USER_MAX
from ingest_api.ownership import owned_user
from ingest_api.schemas import Strict

router = APIRouter(tags=["kyc"])

#: Documents one user may have waiting or kept (a new upload past it is refused).
DOCUMENTS_PER_USER_MAX = 20
PENDING_LISTED_MAX = 200
_BASE64_CHARS_MAX = (DOCUMENT_BYTES_MAX + 2) // 3 * 4
_COLUMNS = """document_id, user_id, document_type, issuing_country, issue_date, expiry_date,
    verification_status, verification_notes, content_type, size_bytes, created_at,
    reviewed_by, reviewed_at"""


class UploadDocument(Strict):
    document_type: DocumentType
    document_number: PlainText = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9\-]+$")
    issuing_country: str = Field(pattern=r"^[A-Z]{2}$")
    issue_date: date
    expiry_date: date
    #: The file (PDF, JPEG or PNG, at most 10 MB), base64-encoded.
    content_base64: str = Field(min_length=4, max_length=_BASE64_CHARS_MAX + 4)


def _store(request: Request) -> DocumentStore:
    return DocumentStore(service_of(request).settings.kyc_document_dir)


def _decoded(body: UploadDocument) -> tuple[bytes, str]:
    if body.expiry_date <= body.issue_date or body.issue_date > date.today():
        raise Unprocessable(
            "issue_date must be past and before expiry_date", code="INVALID_DOCUMENT_DATES"
        )
    if body.expiry_date < date.today():
        raise Unprocessable("the document has expired", code="DOCUMENT_EXPIRED")
    try:
        data = base64.b64decode(body.content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable("content_base64 is not base64", code="INVALID_DOCUMENT") from None
    if len(data) > DOCUMENT_BYTES_MAX:
        raise ApiError(
            f"a document is at most {DOCUMENT_BYTES_MAX} bytes",
            code="DOCUMENT_TOO_LARGE",
            status_code=413,
        )
    content_type = sniff_document(data)
    if content_type is None:
        raise ApiError(
            "the file is not a PDF, JPEG or PNG (its type is read from its bytes)",
            code="UNSUPPORTED_DOCUMENT_TYPE",
            status_code=415,
        )
    return data, content_type


@router.post("/v1/users/{user_id}/kyc-documents", status_code=201, response_model=DocumentOut)
async def upload_document(
    user_id: CanonicalUuid, body: UploadDocument, client: Onboarder, request: Request
) -> dict:
    """Upload an identity document for compliance to check (PENDING). 413
    DOCUMENT_TOO_LARGE (over 10 MB), 415 UNSUPPORTED_DOCUMENT_TYPE (not PDF/JPEG/PNG by its
    bytes), 422 INVALID_DOCUMENT, INVALID_DOCUMENT_DATES, DOCUMENT_EXPIRED,
    TOO_MANY_DOCUMENTS; 404 USER_NOT_FOUND; 403 USER_FORBIDDEN. The body may be 14 MiB."""
    data, content_type = _decoded(body)
    store = _store(request)
    document_id = uuid.uuid4()
    now = datetime.now(UTC)
    pool = service_of(request).repository.pool
    reference = None
    try:
        async with pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await owned_user(cur, client, user_id, lock=True)
            await cur.execute(
                "SELECT count(*) AS n FROM kyc_documents WHERE user_id = %s", (user_id,)
            )
            if (await cur.fetchone())["n"] >= DOCUMENTS_PER_USER_MAX:  # type: ignore[index]
                raise Unprocessable(
                    f"a user has at most {DOCUMENTS_PER_USER_MAX} documents",
                    code="TOO_MANY_DOCUMENTS",
                )
            reference = await store.put(document_id, data)
            await cur.execute(
                f"""INSERT INTO kyc_documents (document_id, user_id, document_type,
                       document_number, issuing_country, issue_date, expiry_date,
                       verification_status, document_file_reference, content_type, size_bytes,
                       sha256, created_at, updated_at)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, 'PENDING', %s, %s, %s, %s, %s, %s)
                    RETURNING {_COLUMNS}""",
                (
                    document_id,
                    user_id,
                    body.document_type.value,
                    body.document_number,
                    body.issuing_country,
                    body.issue_date,
                    body.expiry_date,
                    reference,
                    content_type,
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                    now,
                    now,
                ),
            )
            return await cur.fetchone()  # type: ignore[return-value]
    except BaseException:
        if reference is not None:  # the row was not committed: no file without its row
            await store.discard(document_id)
        raise


@router.get("/v1/users/{user_id}/kyc-documents", response_model=list[DocumentOut])
async def user_documents(user_id: CanonicalUuid, client: Onboarder, request: Request) -> list:
    """The user's documents and their decisions (metadata only: the files are for
    compliance), the newest first."""
    async with service_of(request).repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id)
        await cur.execute(
            f"SELECT {_COLUMNS} FROM kyc_documents WHERE user_id = %s ORDER BY created_at DESC",
            (user_id,),
        )
        return await cur.fetchall()


@router.get("/v1/kyc-documents", response_model=list[DocumentOut])
async def documents_to_check(
    client: Compliance,
    request: Request,
    status: Annotated[KycStatus, Query()] = KycStatus.PENDING,
    limit: Annotated[int, Query(ge=1, le=PENDING_LISTED_MAX)] = 50,
) -> list:
    """Documents by verification status (PENDING by default), the oldest first: the queue."""
    async with service_of(request).repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM kyc_documents WHERE verification_status = %s
                 ORDER BY created_at, document_id LIMIT %s""",
            (status.value, limit),
        )
        return await cur.fetchall()


@router.get(
    "/v1/kyc-documents/{document_id}/content",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}, "image/jpeg": {}, "image/png": {}}}},
)
async def document_content(
    document_id: CanonicalUuid, client: Compliance, request: Request
) -> Response:
    """The document's file, for compliance only. 404 DOCUMENT_NOT_FOUND."""
    async with service_of(request).repository.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT document_file_reference, content_type FROM kyc_documents"
            " WHERE document_id = %s",
            (document_id,),
        )
        row = await cur.fetchone()
    data = None if row is None or row[0] is None else await _store(request).get(row[0])
    if data is None or row is None:
        raise NotFound(f"document {document_id} does not exist", code="DOCUMENT_NOT_FOUND")
    return Response(data, media_type=row[1], headers={"Cache-Control": "no-store"})


async def _decide(
    request: Request, client: Any, document_id: uuid.UUID, verdict: KycStatus, note: str | None
) -> dict[str, Any]:
    pool = service_of(request).repository.pool
    try:
        return await _decide_once(request, pool, client, document_id, verdict, note)
    except _Decided as decided:
        await outbox.publish(pool, service_of(request).publisher, decided.user_id)
        raise Conflict(
            f"document {document_id} was decided already", code="DOCUMENT_DECIDED"
        ) from None


class _Decided(Exception):
    user_id: uuid.UUID


async def _decide_once(
    request: Request,
    pool: Any,
    client: Any,
    document_id: uuid.UUID,
    verdict: KycStatus,
    note: str | None,
) -> dict[str, Any]:
    reviewer = f"{client.client_id}/{client.key_id}"
    now = datetime.now(UTC)
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT user_id FROM kyc_documents WHERE document_id = %s", (document_id,)
        )
        found = await cur.fetchone()
        if found is None:
            raise NotFound(f"document {document_id} does not exist", code="DOCUMENT_NOT_FOUND")
        user_id = found["user_id"]
        await cur.execute("SELECT kyc_status FROM users WHERE user_id = %s FOR UPDATE", (user_id,))
        current = (await cur.fetchone())["kyc_status"]  # type: ignore[index]
        await cur.execute(
            f"""UPDATE kyc_documents SET verification_status = %s, verification_notes = %s,
                       reviewed_by = %s, reviewed_at = %s, updated_at = %s
                 WHERE document_id = %s AND verification_status = 'PENDING'
                RETURNING {_COLUMNS}""",
            (verdict.value, note, reviewer, now, now, document_id),
        )
        document = await cur.fetchone()
        if document is None:  # a retry after a 503 may find its records unpublished
            decided = _Decided()
            decided.user_id = user_id
            raise decided
        # A rejected document does not undo a user verified by another one.
        status = (
            current if current == KycStatus.VERIFIED and verdict is KycStatus.REJECTED else verdict
        )
        if status != current:
            await cur.execute(
                """UPDATE users SET kyc_status = %s, updated_at = %s, version = version + 1
                    WHERE user_id = %s RETURNING version""",
                (status, now, user_id),
            )
            version = (await cur.fetchone())["version"]  # type: ignore[index]
            await cur.execute(
                """SELECT wallet_id FROM wallets WHERE user_id = %s AND wallet_type <> 'SYSTEM'
                    ORDER BY created_at DESC LIMIT %s""",
                (user_id, WALLETS_PER_USER_MAX),
            )
            wallets = [row["wallet_id"] for row in await cur.fetchall()]
            announced = [
                records.KycStatusChanged(
                    wallet_id=wallet_id,
                    user_id=user_id,
                    kyc_status=KycStatus(status),
                    version=version,
                    changed_at=now,
                )
                for wallet_id in wallets
            ]
            await outbox.stage(cur, user_id, list(announced))
    await outbox.publish(pool, service_of(request).publisher, user_id)
    return {"document": document, "user_id": user_id, "kyc_status": status}


@router.post("/v1/kyc-documents/{document_id}/approve", response_model=KycDecisionOut)
async def approve_document(
    document_id: CanonicalUuid,
    client: Compliance,
    request: Request,
    body: DecideDocument | None = None,
) -> dict:
    """The document checks out: it and its user become VERIFIED, and the stream applies
    the VERIFIED default limits to the user's next request. 409 DOCUMENT_DECIDED."""
    note = body.reason if body else None
    return await _decide(request, client, document_id, KycStatus.VERIFIED, note)


@router.post("/v1/kyc-documents/{document_id}/reject", response_model=KycDecisionOut)
async def reject_document(
    document_id: CanonicalUuid, body: DecideDocument, client: Compliance, request: Request
) -> dict:
    """The document is refused, with the reason (422 REASON_REQUIRED without one); the
    user becomes REJECTED unless another document verified it. 409 DOCUMENT_DECIDED."""
    if not body.reason:
        raise Unprocessable("say why the document is rejected", code="REASON_REQUIRED")
    return await _decide(request, client, document_id, KycStatus.REJECTED, body.reason)

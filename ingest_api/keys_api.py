"""``/v1/keys``: issue, list, rotate and revoke API keys (``walletpipe keys`` does the same
from the command line, with the same statements: ingest_api/key_store.py).

A key is returned once, when it is issued or rotated in; the database keeps its sha256.
Who may do what is ``domain.access.may_manage``: admins issue keys and manage all of them;
a client lists and revokes its own keys, and a key rotates itself. A revocation or a
rotation's expiry of the old key is in force in every service within a second.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from domain.access import EVERY_ROLE, KeyAction, KeyGrant, Role, may_manage
from domain.inputs import CanonicalUuid, FreeText
from ingest_api import key_store
from ingest_api.deps import Admin, Caller, authenticator_of, service_of
from ingest_api.exceptions import Conflict, Forbidden, NotFound, Unprocessable

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class MeOut(BaseModel):
    client_id: uuid.UUID
    name: str
    key_id: uuid.UUID
    roles: list[Role]
    expires_at: datetime | None
    rate_limit_per_second: int
    rate_limit_burst: int


def me(grant: KeyGrant) -> dict[str, Any]:
    return {
        "client_id": grant.client_id,
        "name": grant.client_name,
        "key_id": grant.key_id,
        "roles": sorted(grant.roles),
        "expires_at": grant.expires_at,
        "rate_limit_per_second": grant.client_rate_per_second,
        "rate_limit_burst": grant.client_burst,
    }


class KeyOut(BaseModel):
    key_id: uuid.UUID
    client_id: uuid.UUID
    client_name: str
    #: The key's first characters, to recognise it; the key itself is never stored.
    key_prefix: str
    label: str
    roles: list[Role]
    rate_limit_per_second: int | None
    rate_limit_burst: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: uuid.UUID | None
    status: str


class KeyList(BaseModel):
    keys: list[KeyOut]


class IssuedKey(BaseModel):
    #: The secret: shown this once. Send it as the X-API-Key header.
    api_key: str
    key: KeyOut
    #: After a rotation: the old key, now expiring at the end of the grace period.
    previous: KeyOut | None = None


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The client the key belongs to; a new name makes a new client.
    client_name: FreeText = Field(min_length=1, max_length=100)
    roles: list[Role] = Field(min_length=1, max_length=len(EVERY_ROLE))
    label: FreeText = Field(default="", max_length=100)
    expires_at: AwareDatetime | None = None
    #: The key's own limit (beside its client's); none: only the client's applies.
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=1_000_000)
    rate_limit_burst: int | None = Field(default=None, ge=1, le=1_000_000)
    #: A new client's limit, all its keys together.
    client_rate_limit_per_second: int = Field(default=100, ge=1, le=1_000_000)


class RotateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: How long the old key keeps working (default KEY_ROTATION_GRACE_S, one day).
    grace_seconds: int | None = Field(default=None, ge=0, le=30 * 86_400)
    #: The new key's expiry (none: it does not expire).
    expires_at: AwareDatetime | None = None


def _future(expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise Unprocessable("expires_at must be in the future", code="INVALID_EXPIRY")


async def _visible_key(request: Request, caller: KeyGrant, key_id: CanonicalUuid) -> dict[str, Any]:
    async with service_of(request).repository.pool.connection() as conn:
        row = await key_store.key(conn, key_id)
    if row is None or not may_manage(caller, KeyAction.READ, row["client_id"], key_id):
        raise NotFound(f"no key {key_id} of your client", code="KEY_NOT_FOUND")
    return row


@router.get("", response_model=KeyList)
async def list_keys(
    caller: Caller,
    request: Request,
    client_id: Annotated[CanonicalUuid | None, Query(description="admins: one client's")] = None,
) -> dict[str, Any]:
    """Your client's keys, newest first (an admin: every client's, or ``client_id``'s)."""
    if Role.ADMIN not in caller.roles:
        client_id = caller.client_id
    async with service_of(request).repository.pool.connection() as conn:
        return {"keys": await key_store.keys_of(conn, client_id)}


@router.post("", status_code=201, response_model=IssuedKey)
async def create_key(body: CreateKey, caller: Admin, request: Request) -> dict[str, Any]:
    """Issue a key; the answer's ``api_key`` is shown this once."""
    _future(body.expires_at)
    async with service_of(request).repository.pool.connection() as conn:
        issued = await key_store.issue(
            conn,
            client_name=body.client_name,
            roles=frozenset(body.roles),
            label=body.label,
            expires_at=body.expires_at,
            client_rate_limit_per_second=body.client_rate_limit_per_second,
            rate_limit_per_second=body.rate_limit_per_second,
            rate_limit_burst=body.rate_limit_burst,
        )
        row = await key_store.key(conn, issued.key_id)
    return {"api_key": issued.api_key, "key": row}


@router.get("/{key_id}", response_model=KeyOut)
async def get_key(key_id: CanonicalUuid, caller: Caller, request: Request) -> dict[str, Any]:
    return await _visible_key(request, caller, key_id)


@router.post("/{key_id}/rotate", status_code=201, response_model=IssuedKey)
async def rotate_key(
    key_id: CanonicalUuid, caller: Caller, request: Request, body: RotateKey | None = None
) -> dict[str, Any]:
    """A new key with this key's client, roles, label and limits; this key keeps working
    for the grace period, then expires. A key rotates itself (admins: any key)."""
    body = body or RotateKey()
    _future(body.expires_at)
    old = await _visible_key(request, caller, key_id)
    if not may_manage(caller, KeyAction.ROTATE, old["client_id"], key_id):
        raise Forbidden("a key rotates only itself; revoke others instead", code="KEY_FORBIDDEN")
    if old["status"] != "ACTIVE":
        raise Conflict(f"key {key_id} is {old['status']}", code="KEY_NOT_ACTIVE")
    service = service_of(request)
    grace = body.grace_seconds
    if grace is None:
        grace = service.settings.key_rotation_grace_s
    async with service.repository.pool.connection() as conn:
        issued, previous = await key_store.rotate(
            conn, old, grace_s=grace, expires_at=body.expires_at
        )
        row = await key_store.key(conn, issued.key_id)
    await authenticator_of(request).check_revision()  # this process at once, others < 1 s
    return {"api_key": issued.api_key, "key": row, "previous": previous}


@router.post("/{key_id}/revoke", response_model=KeyOut)
async def revoke_key(key_id: CanonicalUuid, caller: Caller, request: Request) -> dict[str, Any]:
    """Stop a key of your client (admins: any key) in every service within a second."""
    await _visible_key(request, caller, key_id)
    async with service_of(request).repository.pool.connection() as conn:
        row = await key_store.revoke(conn, key_id)
    assert row is not None
    await authenticator_of(request).check_revision()  # this process at once, others < 1 s
    return row

"""``/v1/limits``: a client manages the spending limits of its own users and wallets.

Routes decode, check ownership, call the store and publish the changed wallet sets to the
stream (``wallet.commands``), which applies them within a second or two. A 201/200 means the
change is in PostgreSQL and acknowledged by Kafka; a 503 means Kafka did not acknowledge it:
repeat the request (an update with the same values publishes again).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.access import KeyGrant
from domain.exceptions import DomainError
from domain.inputs import CanonicalUuid
from domain.limits import LimitPeriod
from domain.money import AMOUNT_PATTERN, AMOUNT_TEXT_LENGTH_MAX, parse_limit_amount, wire
from domain.transactions import TransactionType
from ingest_api.deps import Onboarder, service_of
from ingest_api.exceptions import Forbidden, NotFound, Unprocessable
from ingest_api.limit_store import LimitStore, publish_sets

LIST_ROWS_MAX = 1000
AMOUNT_SCHEMA = {"pattern": AMOUNT_PATTERN, "maxLength": AMOUNT_TEXT_LENGTH_MAX}

router = APIRouter(prefix="/v1/limits", tags=["limits"])


def _limit_amount(value: object) -> str:
    """The one amount grammar (domain/money.py); refused as INVALID_FIELD, as always."""
    if not isinstance(value, str):
        raise ValueError('max_amount must be a decimal string such as "500.00"')
    try:
        parse_limit_amount(value)
    except DomainError as error:
        raise ValueError(error.message) from None
    return value


class CreateLimit(BaseModel):
    """A limit on a user (all its wallets, each on its own) or on one wallet: give exactly
    one of ``user_id`` and ``wallet_id``."""

    model_config = ConfigDict(extra="forbid")

    user_id: CanonicalUuid | None = None
    wallet_id: CanonicalUuid | None = None
    transaction_type: TransactionType
    period_type: LimitPeriod
    max_amount: str = Field(json_schema_extra=AMOUNT_SCHEMA)
    max_count: int = Field(ge=0, le=2**31 - 1)

    _amount = field_validator("max_amount", mode="before")(_limit_amount)


class UpdateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_amount: str | None = Field(default=None, json_schema_extra=AMOUNT_SCHEMA)
    max_count: int | None = Field(default=None, ge=0, le=2**31 - 1)

    @field_validator("max_amount", mode="before")
    @classmethod
    def _amount(cls, value: object) -> object:
        return None if value is None else _limit_amount(value)


class LimitOut(BaseModel):
    limit_id: uuid.UUID
    user_id: uuid.UUID | None
    wallet_id: uuid.UUID | None
    transaction_type: str
    period_type: str
    max_amount: str
    max_count: int
    reset_at: Any
    created_at: Any
    updated_at: Any
    version: int


class LimitList(BaseModel):
    limits: list[LimitOut]


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "max_amount": wire(row["max_amount"])}


async def _owned_user(request: Request, client: KeyGrant, user_id: uuid.UUID) -> uuid.UUID:
    owned = await service_of(request).repository.user_owned(client.client_id, user_id)
    if owned is None:
        raise NotFound(f"user {user_id} does not exist", code="USER_NOT_FOUND")
    if not owned:
        raise Forbidden(f"user {user_id} belongs to another client", code="USER_FORBIDDEN")
    return user_id


async def _owned_wallet(request: Request, client: KeyGrant, wallet_id: uuid.UUID) -> uuid.UUID:
    """The wallet's user, if the client may manage the wallet."""
    access = await service_of(request).repository.wallet_access(client.client_id, [wallet_id])
    wallet = access.get(wallet_id)
    if wallet is None:
        raise NotFound(f"wallet {wallet_id} does not exist", code="WALLET_NOT_FOUND")
    if not wallet.allowed:
        raise Forbidden(f"wallet {wallet_id} belongs to another client", code="WALLET_FORBIDDEN")
    return wallet.user_id


async def _owner(request: Request, client: KeyGrant, row: dict[str, Any]) -> uuid.UUID:
    """The user whose lock guards this limit, if the client may manage it (else 404)."""
    try:
        if row["wallet_id"] is not None:
            return await _owned_wallet(request, client, row["wallet_id"])
        return await _owned_user(request, client, row["user_id"])
    except Forbidden:
        # Another client's limit is as good as absent: do not confirm it exists.
        raise NotFound(f"limit {row['limit_id']} does not exist", code="LIMIT_NOT_FOUND") from None


def _store(request: Request) -> LimitStore:
    return LimitStore(service_of(request).repository.pool)


async def _existing(request: Request, client: KeyGrant, limit_id: uuid.UUID) -> tuple[Any, Any]:
    row = await _store(request).get(limit_id)
    if row is None:
        raise NotFound(f"limit {limit_id} does not exist", code="LIMIT_NOT_FOUND")
    return row, await _owner(request, client, row)


@router.post("", status_code=201, response_model=LimitOut)
async def create_limit(body: CreateLimit, client: Onboarder, request: Request) -> dict[str, Any]:
    if (body.user_id is None) == (body.wallet_id is None):
        raise Unprocessable(
            "give exactly one of user_id (a user's limit) and wallet_id (a wallet's)",
            code="INVALID_LIMIT_SCOPE",
        )
    if body.user_id is not None:
        owner = await _owned_user(request, client, body.user_id)
    else:
        assert body.wallet_id is not None
        owner = await _owned_wallet(request, client, body.wallet_id)
    fields = body.model_dump()
    fields["max_amount"] = Decimal(body.max_amount)
    fields["transaction_type"] = body.transaction_type.value
    fields["period_type"] = body.period_type.value
    row, sets = await _store(request).create(owner, fields)
    await publish_sets(service_of(request).publisher, sets)
    return _out(row)


@router.get("", response_model=LimitList)
async def list_limits(
    client: Onboarder,
    request: Request,
    user_id: Annotated[CanonicalUuid | None, Query()] = None,
    wallet_id: Annotated[CanonicalUuid | None, Query()] = None,
) -> dict[str, Any]:
    rows = await _store(request).list_for_client(
        client.client_id, user_id, wallet_id, LIST_ROWS_MAX
    )
    return {"limits": [_out(row) for row in rows]}


@router.get("/{limit_id}", response_model=LimitOut)
async def get_limit(limit_id: CanonicalUuid, client: Onboarder, request: Request) -> dict[str, Any]:
    row, _owner_id = await _existing(request, client, limit_id)
    return _out(row)


@router.patch("/{limit_id}", response_model=LimitOut)
async def update_limit(
    limit_id: CanonicalUuid, body: UpdateLimit, client: Onboarder, request: Request
) -> dict[str, Any]:
    if body.max_amount is None and body.max_count is None:
        raise Unprocessable("give max_amount, max_count or both", code="MISSING_FIELD")
    _row, owner = await _existing(request, client, limit_id)
    changes = {
        "max_amount": None if body.max_amount is None else Decimal(body.max_amount),
        "max_count": body.max_count,
    }
    row, sets = await _store(request).update(limit_id, owner, changes)
    if row is None:
        raise NotFound(f"limit {limit_id} does not exist", code="LIMIT_NOT_FOUND")
    await publish_sets(service_of(request).publisher, sets)
    return _out(row)


@router.delete("/{limit_id}", status_code=204)
async def delete_limit(limit_id: CanonicalUuid, client: Onboarder, request: Request) -> Response:
    _row, owner = await _existing(request, client, limit_id)
    row, sets = await _store(request).delete(limit_id, owner)
    if row is None:
        raise NotFound(f"limit {limit_id} does not exist", code="LIMIT_NOT_FOUND")
    await publish_sets(service_of(request).publisher, sets)
    return Response(status_code=204)

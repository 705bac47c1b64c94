"""``/v1/webhooks``: subscribe endpoints to event types, see their deliveries, send again
(``walletpipe webhooks`` does the same from the command line: ingest_api/webhook_store.py).

A client sees and manages its own endpoints (an admin: every client's); an endpoint gets
the events of its client's transactions. Its signing secret is returned once, when it is
made. The endpoint's URL must be http(s) and resolve to addresses the operator allows
(``domain.webhooks.AddressPolicy``); the notification service checks again at every
attempt, since DNS can change. docs/webhooks.md says what a receiver does.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from domain.access import KeyGrant, Role
from domain.inputs import CanonicalUuid, FreeText
from domain.webhooks import URL_LENGTH_MAX, AddressPolicy, EndpointRefused, EventType
from ingest_api import webhook_store
from ingest_api.deps import Subscriber, service_of
from ingest_api.exceptions import NotFound, Unprocessable

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class WebhookOut(BaseModel):
    subscription_id: uuid.UUID
    client_id: uuid.UUID
    client_name: str
    url: str
    event_types: list[str]
    description: str
    #: The secret's first characters, to tell secrets apart; the secret is shown once.
    secret_prefix: str
    created_at: datetime
    deleted_at: datetime | None
    status: str
    #: Deliveries waiting (or in flight), and dead-lettered ones.
    pending: int
    dead: int


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class CreatedWebhook(BaseModel):
    #: The HMAC-SHA256 key of this endpoint's signatures: shown this once.
    secret: str
    webhook: WebhookOut


class CreateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=URL_LENGTH_MAX)
    event_types: list[EventType] = Field(min_length=1, max_length=len(EventType))
    description: FreeText = Field(default="", max_length=200)


class DeliveryOut(BaseModel):
    delivery_id: int
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    transaction_id: uuid.UUID | None
    status: str
    attempts: int
    created_at: datetime
    first_attempt_at: datetime | None
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    finished_at: datetime | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


class Redeliver(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The deliveries to send again (delivered or dead); none: every dead one.
    delivery_ids: list[int] | None = Field(default=None, min_length=1, max_length=1000)


def address_policy(request: Request) -> AddressPolicy:
    settings = service_of(request).settings
    return AddressPolicy.parse(settings.webhook_allow_loopback, settings.webhook_allowed_networks)


async def check_endpoint(url: str, policy: AddressPolicy, timeout_s: float) -> None:
    """Refuse (422) an endpoint that is not http(s) or resolves to a refused address."""
    try:
        endpoint = policy.endpoint(url)
        try:
            async with asyncio.timeout(timeout_s):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    endpoint.host, endpoint.port, type=socket.SOCK_STREAM
                )
        except (OSError, TimeoutError):
            raise EndpointRefused(f"{endpoint.host} does not resolve") from None
        policy.check(endpoint.host, [str(info[4][0]) for info in infos])
    except EndpointRefused as error:
        raise Unprocessable(error.message, code=error.code) from None


async def _visible(
    request: Request, caller: KeyGrant, subscription_id: uuid.UUID
) -> dict[str, Any]:
    async with service_of(request).repository.pool.connection() as conn:
        row = await webhook_store.subscription(conn, subscription_id)
    if row is None or (Role.ADMIN not in caller.roles and row["client_id"] != caller.client_id):
        raise NotFound(f"no webhook {subscription_id} of your client", code="WEBHOOK_NOT_FOUND")
    return row


@router.post("", status_code=201, response_model=CreatedWebhook)
async def create_webhook(body: CreateWebhook, caller: Subscriber, request: Request) -> dict:
    """Subscribe an endpoint of your client to event types; the answer's ``secret`` (the
    signatures' key) is shown this once."""
    timeout_s = service_of(request).settings.webhook_resolve_timeout_ms / 1000
    await check_endpoint(body.url, address_policy(request), timeout_s)
    async with service_of(request).repository.pool.connection() as conn:
        row, secret = await webhook_store.create(
            conn,
            client_id=caller.client_id,
            url=body.url,
            event_types=list(dict.fromkeys(body.event_types)),
            description=body.description,
        )
    return {"secret": secret, "webhook": row}


@router.get("", response_model=WebhookList)
async def list_webhooks(
    caller: Subscriber,
    request: Request,
    client_id: Annotated[CanonicalUuid | None, Query(description="admins: one client's")] = None,
    include_deleted: bool = False,
) -> dict:
    """Your client's endpoints, newest first (an admin: every client's, or ``client_id``'s)."""
    if Role.ADMIN not in caller.roles:
        client_id = caller.client_id
    async with service_of(request).repository.pool.connection() as conn:
        return {"webhooks": await webhook_store.subscriptions(conn, client_id, include_deleted)}


@router.get("/{subscription_id}", response_model=WebhookOut)
async def get_webhook(subscription_id: CanonicalUuid, caller: Subscriber, request: Request) -> dict:
    return await _visible(request, caller, subscription_id)


@router.delete("/{subscription_id}", response_model=WebhookOut)
async def delete_webhook(
    subscription_id: CanonicalUuid, caller: Subscriber, request: Request
) -> dict:
    """Stop the endpoint: nothing more is sent to it; its pending deliveries are dead."""
    await _visible(request, caller, subscription_id)
    async with service_of(request).repository.pool.connection() as conn:
        row = await webhook_store.delete(conn, subscription_id)
    assert row is not None
    return row


@router.get("/{subscription_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    subscription_id: CanonicalUuid,
    caller: Subscriber,
    request: Request,
    status: Literal["PENDING", "DELIVERED", "DEAD"] | None = None,
    limit: Annotated[int, Query(ge=1, le=webhook_store.LIST_ROWS_MAX)] = 100,
) -> dict:
    """The endpoint's deliveries, newest first: attempts, the last answer or error."""
    await _visible(request, caller, subscription_id)
    async with service_of(request).repository.pool.connection() as conn:
        rows = await webhook_store.deliveries(conn, subscription_id, status, limit)
    return {"deliveries": rows}


@router.post("/{subscription_id}/redeliver", status_code=202, response_model=DeliveryList)
async def redeliver(
    subscription_id: CanonicalUuid,
    caller: Subscriber,
    request: Request,
    body: Redeliver | None = None,
) -> dict:
    """Send deliveries again, at once and with a fresh retry window: the ones named, or
    every dead one. Answers those that will be sent (a pending one is left as it is)."""
    row = await _visible(request, caller, subscription_id)
    if row["deleted_at"] is not None:
        raise Unprocessable("the endpoint was deleted", code="WEBHOOK_DELETED")
    ids = body.delivery_ids if body is not None else None
    async with service_of(request).repository.pool.connection() as conn:
        return {"deliveries": await webhook_store.redeliver(conn, subscription_id, ids)}

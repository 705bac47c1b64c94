"""The FastAPI application: routes only decode, call the service, and answer.

Run with ``uvicorn --factory ingest_api.app:create_app`` (settings come from the
environment) or through ``walletpipe run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from domain.shards import split_database_urls
from ingest_api import limits, outages, reversals, reviews
from ingest_api.exceptions import ApiError
from ingest_api.publisher import KafkaPublisher
from ingest_api.relay import relay_forever
from ingest_api.repository import Client, Repository
from ingest_api.schemas import (
    BalanceOut,
    ClientOut,
    CreateGrant,
    CreateTransaction,
    CreateUser,
    CreateWallet,
    GrantOut,
    TransactionAccepted,
    TransactionOut,
    UserOut,
    WalletOut,
)
from ingest_api.service import IngestService
from ingest_api.settings import IngestSettings

PUBLISHED_MARK_INTERVAL_S = 0.2


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def _validation_error(error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0] if error.errors() else {"type": "", "msg": "invalid", "loc": ()}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    if first["type"] == "json_invalid":
        return _error(400, "MALFORMED_JSON", f"the body is not valid JSON: {first['msg']}")
    if first["type"] == "extra_forbidden":
        return _error(422, "UNKNOWN_FIELD", f"unknown field {where!r}")
    if first["type"] == "missing":
        return _error(422, "MISSING_FIELD", f"field {where!r} is required")
    return _error(422, "INVALID_FIELD", f"{where}: {first['msg']}")


def service_of(request: Request) -> IngestService:
    return request.app.state.service  # type: ignore[no-any-return]


async def caller(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> Client:
    """Every /v1 route authenticates (and rate-limits) its caller by API key."""
    return await service_of(request).authenticate(x_api_key)


Caller = Annotated[Client, Depends(caller)]


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()  # type: ignore[call-arg]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Opened without waiting: while PostgreSQL is away the API starts and answers 503
        # (ingest_api.outages), and the pools connect once it is back.
        pool_options = outages.pool_options(settings)
        pool = AsyncConnectionPool(
            settings.database_url,
            min_size=2,
            max_size=settings.db_pool_size_max,
            open=False,
            **pool_options,
        )
        await pool.open(wait=False)
        shard_urls = split_database_urls(settings.ledger_database_urls)
        shard_pools = [
            AsyncConnectionPool(
                url, min_size=1, max_size=settings.shard_pool_size_max, open=False, **pool_options
            )
            for url in (shard_urls if len(shard_urls) > 1 else [])
        ]
        for shard_pool in shard_pools:
            await shard_pool.open(wait=False)
        publisher = KafkaPublisher(
            settings.kafka_bootstrap, settings.producer_linger_ms, settings.publish_timeout_ms
        )
        service = IngestService(settings, Repository(pool, shard_pools), publisher)
        app.state.service = service

        async def mark_published_forever() -> None:
            while True:
                await asyncio.sleep(PUBLISHED_MARK_INTERVAL_S)
                with contextlib.suppress(Exception):  # retried on the next tick
                    await service.flush_published_marks()

        marker = asyncio.create_task(mark_published_forever())
        relay = asyncio.create_task(relay_forever(pool, publisher, settings))
        try:
            yield
        finally:
            marker.cancel()
            relay.cancel()
            with contextlib.suppress(Exception):
                await service.flush_published_marks()
            publisher.close()
            for shard_pool in shard_pools:
                await shard_pool.close()
            await pool.close()

    app = FastAPI(title="wallet-pipeline ingest API", version="1", lifespan=lifespan)
    outages.install(app)

    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, error: ApiError) -> JSONResponse:
        return _error(error.status_code, error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return _validation_error(error)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/users", status_code=201, response_model=UserOut)
    async def create_user(body: CreateUser, client: Caller, request: Request) -> dict:
        return await service_of(request).create_user(client, body)

    @app.post("/v1/wallets", status_code=201, response_model=WalletOut)
    async def create_wallet(body: CreateWallet, client: Caller, request: Request) -> dict:
        return await service_of(request).create_wallet(client, body)

    @app.get("/v1/me", response_model=ClientOut)
    async def me(client: Caller) -> Client:
        return client

    @app.post("/v1/wallets/{wallet_id}/grants", status_code=201, response_model=GrantOut)
    async def grant_wallet(
        wallet_id: uuid.UUID, body: CreateGrant, client: Caller, request: Request
    ) -> dict:
        return await service_of(request).grant_wallet(client, wallet_id, body.client_id)

    @app.get("/v1/wallets/{wallet_id}/balance", response_model=BalanceOut)
    async def wallet_balance(wallet_id: uuid.UUID, client: Caller, request: Request) -> dict:
        return await service_of(request).get_balance(client, wallet_id)

    @app.post("/v1/transactions", status_code=202, response_model=TransactionAccepted)
    async def create_transaction(
        body: CreateTransaction,
        client: Caller,
        request: Request,
        idempotency_key: Annotated[str | None, Header()] = None,
        user_agent: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        ip = request.client.host if request.client else None
        answer = await service_of(request).submit_transaction(
            client, body, idempotency_key, ip, user_agent
        )
        content = TransactionAccepted.model_validate(answer).model_dump(mode="json")
        return JSONResponse(
            status_code=202,
            content=content,
            headers={"Location": f"/v1/transactions/{answer['transaction_id']}"},
        )

    @app.get("/v1/transactions/{transaction_id}", response_model=TransactionOut)
    async def get_transaction(transaction_id: uuid.UUID, client: Caller, request: Request) -> dict:
        return await service_of(request).get_transaction(client, transaction_id)

    app.include_router(limits.router)
    app.include_router(reviews.router)
    app.include_router(reversals.router)
    return app

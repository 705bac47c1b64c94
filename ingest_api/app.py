"""The FastAPI application: routes only decode, call the service, and answer.

Run with ``uvicorn --factory ingest_api.app:create_app`` (settings come from the
environment) or through ``walletpipe run``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool

from domain.inputs import CanonicalUuid
from domain.shards import split_database_urls
from infra.metrics import install_http_metrics
from ingest_api import (
    batch,
    errors,
    keys_api,
    limits,
    outages,
    refunds,
    reversals,
    reviews,
    webhooks_api,
)
from ingest_api.authentication import Authenticator
from ingest_api.deps import Caller, Onboarder, Tenant, document_roles, service_of
from ingest_api.errors import BodyGuard
from ingest_api.outcomes import OutcomeWatcher, wait_preference
from ingest_api.publisher import KafkaPublisher
from ingest_api.ratelimit import RateLimiter, SharedBuckets, default_table_path
from ingest_api.relay import relay_forever
from ingest_api.repository import Repository
from ingest_api.schemas import (
    BalanceOut,
    CreateGrant,
    CreateTransaction,
    CreateUser,
    CreateWallet,
    GrantOut,
    TransactionAccepted,
    TransactionEnded,
    TransactionOut,
    UserOut,
    WalletOut,
)
from ingest_api.service import IngestService
from ingest_api.settings import IngestSettings
from ingest_api.submission import ended_answer, json_response

PUBLISHED_MARK_INTERVAL_S = 0.2
#: Required (MISSING_IDEMPOTENCY_KEY without it); printable ASCII, unique per transaction.
IDEMPOTENCY_KEY_SCHEMA = {"maxLength": 255, "pattern": "^[ -~]+$"}
PREFER_DESCRIPTION = (
    "RFC 7240. `wait=N` (seconds, at most 10): answer 200 with the final state if the "
    "transaction ends within N seconds, else 202. Other preferences are ignored."
)
ENDED_DESCRIPTION = (
    "Sent with `Prefer: wait=N`: the transaction ended within N seconds; its final state "
    "(`COMPLETED`, or `FAILED` with `failure_code`). Header `Preference-Applied: wait=N`."
)


def rate_limiter(settings: IngestSettings) -> RateLimiter:
    path = settings.rate_limit_file or default_table_path("ingest", settings.database_url)
    return RateLimiter(
        SharedBuckets(Path(path), settings.rate_limit_clients_max),
        auth_failures_per_second=settings.auth_failures_per_second,
        auth_failures_burst=settings.auth_failures_burst,
    )


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
        # Single statements of the hot path and the background loops (recording requests,
        # marking them published, revision polls, key look-ups) need no transaction
        # block: in autocommit each is one round trip, not BEGIN + statement + COMMIT.
        quick_pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=settings.quick_pool_size_max,
            open=False,
            **{**pool_options, "kwargs": {**pool_options["kwargs"], "autocommit": True}},
        )
        await quick_pool.open(wait=False)
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
        outcomes = OutcomeWatcher(settings.kafka_bootstrap, settings.outcome_waiters_max)
        outcomes.start()
        repository = Repository(pool, shard_pools, quick_pool=quick_pool)
        service = IngestService(settings, repository, publisher, outcomes)
        authenticator = Authenticator(
            quick_pool,
            rate_limiter(settings),
            cache_entries_max=settings.cache_entries_max,
            trust_ms=settings.api_key_trust_ms,
            poll_ms=settings.api_key_revision_poll_ms,
        )
        with contextlib.suppress(*outages.DATABASE_ERRORS):  # PostgreSQL away: watched below
            await authenticator.check_revision()
        app.state.service, app.state.authenticator = service, authenticator

        async def mark_published_forever() -> None:
            while True:
                await asyncio.sleep(PUBLISHED_MARK_INTERVAL_S)
                with contextlib.suppress(Exception):  # retried on the next tick
                    await service.flush_published_marks()

        marker = asyncio.create_task(mark_published_forever())
        revisions = asyncio.create_task(authenticator.watch_revisions())
        wallet_revisions = asyncio.create_task(
            service.watch_wallet_access(settings.api_key_revision_poll_ms / 1000)
        )
        relay = asyncio.create_task(relay_forever(quick_pool, publisher, settings))
        try:
            yield
        finally:
            revisions.cancel()
            wallet_revisions.cancel()
            outcomes.close()
            marker.cancel()
            relay.cancel()
            with contextlib.suppress(Exception):
                await service.flush_published_marks()
            publisher.close()
            for shard_pool in shard_pools:
                await shard_pool.close()
            await quick_pool.close()
            await pool.close()

    app = FastAPI(
        title="wallet-pipeline ingest API",
        version="1",
        lifespan=lifespan,
        responses=errors.ERROR_RESPONSES,
    )
    errors.install(app)
    outages.install(app)
    app.add_middleware(BodyGuard)
    install_http_metrics(app, "ingest")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/users", status_code=201, response_model=UserOut)
    async def create_user(body: CreateUser, client: Onboarder, request: Request) -> dict:
        return await service_of(request).create_user(client, body)

    @app.post("/v1/wallets", status_code=201, response_model=WalletOut)
    async def create_wallet(body: CreateWallet, client: Onboarder, request: Request) -> dict:
        return await service_of(request).create_wallet(client, body)

    @app.get("/v1/me", response_model=keys_api.MeOut)
    async def me(client: Caller) -> dict:
        """The client and key behind the X-API-Key header."""
        return keys_api.me(client)

    @app.post("/v1/wallets/{wallet_id}/grants", status_code=201, response_model=GrantOut)
    async def grant_wallet(
        wallet_id: CanonicalUuid, body: CreateGrant, client: Tenant, request: Request
    ) -> dict:
        return await service_of(request).grant_wallet(client, wallet_id, body.client_id)

    @app.get("/v1/wallets/{wallet_id}/balance", response_model=BalanceOut)
    async def wallet_balance(wallet_id: CanonicalUuid, client: Tenant, request: Request) -> dict:
        return await service_of(request).get_balance(client, wallet_id)

    @app.post(
        "/v1/transactions",
        status_code=202,
        response_model=TransactionAccepted,
        responses={200: {"model": TransactionEnded, "description": ENDED_DESCRIPTION}},
    )
    async def create_transaction(
        body: CreateTransaction,
        client: Tenant,
        request: Request,
        idempotency_key: Annotated[
            str | None, Header(json_schema_extra=IDEMPOTENCY_KEY_SCHEMA)
        ] = None,
        user_agent: Annotated[str | None, Header()] = None,
        prefer: Annotated[str | None, Header(description=PREFER_DESCRIPTION)] = None,
    ) -> Response:
        """Accept a transaction: 202 once it is recorded and Kafka acknowledged it.

        With `Prefer: wait=N` (RFC 7240, N <= 10 seconds) the answer waits for the
        transaction to end: 200 with its final state (`COMPLETED` or `FAILED`, with the
        failure's code) if it ends within N seconds, else 202 as without the header.
        `Preference-Applied: wait=N` says the wait was honoured. A repeat of an accepted
        request (same Idempotency-Key and body) answers the first 202 at once."""
        ip = request.client.host if request.client else None
        wait_s = wait_preference(prefer)
        submitted = await service_of(request).submit_transaction(
            client, body, idempotency_key, ip, user_agent, wait_s
        )
        answer = submitted.answer
        headers = {"Location": f"/v1/transactions/{answer['transaction_id']}"}
        if submitted.waited:
            headers["Preference-Applied"] = f"wait={wait_s}"
        if submitted.outcome is not None:
            return json_response(200, ended_answer(answer, submitted.outcome), headers)
        return json_response(202, answer, headers)

    @app.get("/v1/transactions/{transaction_id}", response_model=TransactionOut)
    async def get_transaction(
        transaction_id: CanonicalUuid, client: Tenant, request: Request
    ) -> dict:
        return await service_of(request).get_transaction(client, transaction_id)

    document_roles(app.router)
    for module in (batch, limits, reviews, reversals, refunds, keys_api, webhooks_api):
        app.include_router(document_roles(module.router))
    return app

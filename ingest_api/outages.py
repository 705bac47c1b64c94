"""What the API answers while PostgreSQL or Kafka is away: 503 in the error envelope, with a
code that tells the caller whether its request is surely not accepted or may have been.

- Before a request is recorded (authentication, the idempotency look-up, the wallet
  checks) a database failure means nothing was recorded and nothing published:
  ``UNAVAILABLE_NOT_ACCEPTED`` (``nothing_recorded``).
- Recording the accepted request (one INSERT) is the commit point. A failure while it runs,
  once a connection was had, or after it (Kafka not acknowledging the publish) is
  ``UNAVAILABLE_OUTCOME_UNKNOWN`` (``recording``; the publisher raises it itself). A request
  that was recorded but not published is published later by ``ingest_api.relay``, so it
  reaches its outcome even if the caller never retries; a retry with the same
  Idempotency-Key returns the first answer.
- A database error nobody classified (the other routes): a read changed nothing
  (``NOT_ACCEPTED``); a write may have happened (``OUTCOME_UNKNOWN``).

Every 503 carries ``Retry-After``. The pool reconnects by itself (``pool_options``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from ingest_api.exceptions import NotAccepted, OutcomeUnknown, Unavailable
from ingest_api.settings import IngestSettings

log = logging.getLogger("ingest_api")
#: Errors of a database that is away (refused, restarted, a connection cut); a PoolTimeout
#: (no connection within db_acquire_timeout_ms) is one of them.
DATABASE_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
RETRY_AFTER_S = 1
LOG_EVERY_S = 10.0
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

P = ParamSpec("P")
R = TypeVar("R")
_last_logged = [0.0]


def pool_options(settings: IngestSettings) -> dict[str, Any]:
    """Options of the API's connection pools: a request waits ``db_acquire_timeout_ms`` at
    most for a connection (then 503), and a pool whose server went away gives up a
    reconnection attempt after ``db_reconnect_timeout_ms``: the next request then starts a
    new one at once, so a restarted server is used again within that long."""
    return {
        "timeout": settings.db_acquire_timeout_ms / 1000,
        "reconnect_timeout": settings.db_reconnect_timeout_ms / 1000,
        "kwargs": {"connect_timeout": max(1, settings.db_acquire_timeout_ms // 1000)},
    }


def _note(error: BaseException) -> None:
    """Say that a backing service is away, once every LOG_EVERY_S (not once per request)."""
    now = time.monotonic()
    if now - _last_logged[0] >= LOG_EVERY_S:
        _last_logged[0] = now
        log.warning("PostgreSQL is unavailable, answering 503: %s", error)


def nothing_recorded(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """For steps that record nothing: a database failure inside is NOT_ACCEPTED."""

    @functools.wraps(function)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await function(*args, **kwargs)
        except DATABASE_ERRORS as error:
            _note(error)
            raise NotAccepted("the database is unavailable; nothing was recorded: retry") from None

    return guarded


@contextmanager
def recording() -> Iterator[None]:
    """Around the INSERT of an accepted request: without a connection nothing happened
    (NOT_ACCEPTED); with one, the INSERT may have committed (OUTCOME_UNKNOWN)."""
    try:
        yield
    except PoolTimeout as error:
        _note(error)
        raise NotAccepted("the database is unavailable; nothing was recorded: retry") from None
    except DATABASE_ERRORS as error:
        _note(error)
        raise OutcomeUnknown(
            "the database failed while recording the request; it may have been accepted: "
            "retry with the same Idempotency-Key"
        ) from None


def _unavailable(error: Unavailable) -> JSONResponse:
    return JSONResponse(
        status_code=error.status_code,
        content={"error": {"code": error.code, "message": error.message}},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def install(app: FastAPI) -> None:
    """The 503 answers: every ``Unavailable`` (with Retry-After), and database errors that
    no step classified."""

    @app.exception_handler(Unavailable)
    async def on_unavailable(_request: Request, error: Unavailable) -> JSONResponse:
        return _unavailable(error)

    async def on_database_error(request: Request, error: Exception) -> JSONResponse:
        _note(error)
        if request.method in READ_METHODS:
            return _unavailable(NotAccepted("the database is unavailable: retry"))
        return _unavailable(
            OutcomeUnknown(
                "the database failed during the request; it may have taken effect: check "
                "before retrying"
            )
        )

    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, on_database_error)

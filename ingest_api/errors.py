"""Every answer that is not a success is ``{"error": {"code", "message"}}`` with a stable code.

``install`` registers the handlers that make it so: the API's own errors, request validation
(mapped to the codes callers branch on), the framework's HTTP errors (unknown route, wrong
method, a body that does not parse) and, last, any unexpected exception (a generic 500 that
names no internals). ``BodyGuard`` refuses, before FastAPI reads anything, a body that is too
large (413) or not JSON (415).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.inputs import ERROR_CODES
from infra.metrics import ERRORS
from ingest_api.exceptions import ApiError
from ingest_api.schemas import ErrorOut

log = logging.getLogger("ingest_api")

#: The largest request body: a transaction at its bounds (1,000-character description, 32
#: metadata entries of 256 characters, all JSON-escaped) stays well below it.
REQUEST_BODY_BYTES_MAX = 128 * 1024
#: The batch endpoint's body: 1,000 ordinary transactions are ~0.3 MB; items near their
#: bounds fit fewer.
BATCH_BODY_BYTES_MAX = 8 * 1024 * 1024
#: Routes whose body may be larger than REQUEST_BODY_BYTES_MAX, and how large.
LARGE_BODY_PATHS = {"/v1/transactions/batch": BATCH_BODY_BYTES_MAX}
#: Codes of the framework's own HTTP errors. 400 is only raised for a body that does not
#: parse (a JSON number too long to read, nesting too deep).
HTTP_ERROR_CODES = {
    400: "MALFORMED_JSON",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: Documented on every route (OpenAPI): each error answer and when it comes.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        400: "MALFORMED_JSON: the body is not JSON",
        401: "MISSING_API_KEY or INVALID_API_KEY",
        403: "the key may not act on this resource (WALLET_FORBIDDEN, ...)",
        404: "the resource does not exist (WALLET_NOT_FOUND, ...), or NOT_FOUND: no such route",
        405: "METHOD_NOT_ALLOWED",
        409: "contradicts an earlier request (IDEMPOTENCY_KEY_REUSED, ...)",
        413: "PAYLOAD_TOO_LARGE: the body is larger than 128 KiB (8 MiB for a batch)",
        415: "UNSUPPORTED_MEDIA_TYPE: the body is not sent as application/json",
        422: "breaks a rule (UNKNOWN_FIELD, MISSING_FIELD, INVALID_FIELD, INVALID_TEXT, "
        "INVALID_METADATA, INVALID_AMOUNT, ...); nothing was recorded",
        429: "RATE_LIMITED",
        500: "INTERNAL_ERROR: a bug; the request may be retried with the same Idempotency-Key",
        503: "UNAVAILABLE: a backing service did not answer; retry with the same Idempotency-Key",
    }.items()
}


def error_body(code: str, message: str) -> dict[str, Any]:
    """The envelope of every error answer; each one is counted by code (``/metrics``)."""
    ERRORS.labels("ingest", code).inc()
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(code, message), headers=headers)


def validation_refusal(problems: Sequence[Any]) -> tuple[int, str, str]:
    """(status, code, message) of the first problem of a value that does not fit its
    schema (pydantic's ``errors()``): what a request, or one item of a batch, answers."""
    first = problems[0] if problems else {"type": "", "msg": "invalid", "loc": ()}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    kind = first["type"]
    if kind == "json_invalid":
        return 400, "MALFORMED_JSON", f"the body is not valid JSON: {first['msg']}"
    if kind == "extra_forbidden":
        return 422, "UNKNOWN_FIELD", f"unknown field {where!r}"
    if kind == "missing":
        return 422, "MISSING_FIELD", f"field {where!r} is required"
    return 422, ERROR_CODES.get(kind, "INVALID_FIELD"), f"{where}: {first['msg']}"


def validation_error(error: RequestValidationError) -> JSONResponse:
    """The first problem of a request that does not fit its schema, as a 400 or 422."""
    return error_response(*validation_refusal(error.errors()))


def install(app: FastAPI) -> None:
    """Register the handlers of every error the API can answer."""

    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status_code, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return validation_error(error)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_ERROR_CODES.get(error.status_code, f"HTTP_{error.status_code}")
        message = {
            400: "the body could not be parsed as JSON",
            404: f"no route {request.url.path!r}; the routes are in /openapi.json",
            405: f"{request.method} is not allowed on {request.url.path!r}",
        }.get(error.status_code, str(error.detail))
        return error_response(error.status_code, code, message, error.headers)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, _error: Exception) -> JSONResponse:
        # The traceback is logged by the server; the caller learns nothing of the internals.
        return error_response(
            500, "INTERNAL_ERROR", f"{request.method} {request.url.path} failed unexpectedly"
        )


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class BodyGuard:
    """ASGI middleware: a request body is at most ``body_bytes_max`` bytes, and JSON.

    The body is read here (bounded) and handed on whole, so the size holds whether or not
    the client sent a Content-Length.
    """

    def __init__(
        self,
        app: ASGIApp,
        body_bytes_max: int = REQUEST_BODY_BYTES_MAX,
        large_body_paths: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.body_bytes_max = body_bytes_max
        self.large_body_paths = LARGE_BODY_PATHS if large_body_paths is None else large_body_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        bytes_max = self.large_body_paths.get(scope["path"], self.body_bytes_max)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > bytes_max:
            await self._refuse(scope, receive, send, 413, bytes_max)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > bytes_max:
                await self._refuse(scope, receive, send, 413, bytes_max)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and not _is_json(headers.get("content-type", "")):
            await self._refuse(scope, receive, send, 415, bytes_max)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, bytes_max: int
    ) -> None:
        message = {
            413: f"the request body is larger than {bytes_max} bytes",
            415: "send the body as JSON with the header Content-Type: application/json",
        }[status]
        response = error_response(status, HTTP_ERROR_CODES[status], message)
        await response(scope, receive, send)

"""Every answer of the reporting API that is not a success is ``{"error": {"code",
"message"}}`` with a stable code: the service's own errors, request validation
(``INVALID_REQUEST``), the framework's HTTP errors (unknown route, wrong method) and, last,
any unexpected exception (a generic 500 that names no internals)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from analytics.exceptions import AnalyticsError
from infra.metrics import ERRORS

HTTP_ERROR_CODES = {
    400: "MALFORMED_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


#: Documented on every report (OpenAPI): each error answer and when it comes.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        401: "MISSING_API_KEY or INVALID_API_KEY",
        403: "REPORT_FORBIDDEN_FOR_ROLE: the key's role may not read this report",
        404: "UNKNOWN_REPORT, or NOT_FOUND: no such route",
        405: "METHOD_NOT_ALLOWED",
        422: "INVALID_REQUEST, INVALID_RANGE, RANGE_TOO_LARGE, INVALID_GRANULARITY, "
        "TOO_MANY_POINTS, INVALID_PERIOD, TOO_MUCH_DATA",
        500: "INTERNAL_ERROR: a bug",
        503: "AUTH_UNAVAILABLE or SIGNING_KEY_MISSING: retry later",
    }.items()
}


def error_body(code: str, message: str) -> dict[str, Any]:
    """The envelope of every error answer; each one is counted by code (``/metrics``)."""
    ERRORS.labels("analytics", code).inc()
    return {"error": {"code": code, "message": message}}


def install(app: FastAPI) -> None:
    """Register the handlers of every error the reporting API can answer."""

    @app.exception_handler(AnalyticsError)
    async def on_analytics_error(_request: Request, error: AnalyticsError) -> JSONResponse:
        return JSONResponse(
            status_code=error.status,
            content=error_body(error.code, error.message),
            headers=error.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "query")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return JSONResponse(status_code=422, content=error_body("INVALID_REQUEST", message))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_ERROR_CODES.get(error.status_code, f"HTTP_{error.status_code}")
        message = {
            404: f"no route {request.url.path!r}; the reports are in /openapi.json",
            405: f"{request.method} is not allowed on {request.url.path!r}",
        }.get(error.status_code, str(error.detail))
        return JSONResponse(
            status_code=error.status_code, content=error_body(code, message), headers=error.headers
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, _error: Exception) -> JSONResponse:
        # The traceback is logged by the server; the caller learns nothing of the internals.
        return JSONResponse(
            status_code=500,
            content=error_body(
                "INTERNAL_ERROR", f"{request.method} {request.url.path} failed unexpectedly"
            ),
        )

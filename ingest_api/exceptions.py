"""API errors: each becomes a JSON body ``{"error": {"code", "message"}}`` with its status."""

from __future__ import annotations


class ApiError(Exception):
    """Root of the API's errors. ``code`` is stable: callers branch on it, not on the text."""

    status_code = 400
    code = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        #: Response headers the answer must carry (Retry-After and RateLimit-* of a 429).
        self.headers = headers
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code


class Unauthorized(ApiError):
    """No or unknown API key. Caller: send the key issued to you in the X-API-Key header."""

    status_code = 401
    code = "INVALID_API_KEY"


class Forbidden(ApiError):
    """The key is valid but may not act on this resource (someone else's wallet)."""

    status_code = 403
    code = "FORBIDDEN"


class NotFound(ApiError):
    """The resource does not exist (or is not visible to this client)."""

    status_code = 404
    code = "NOT_FOUND"


class Conflict(ApiError):
    """The request contradicts an earlier one (a reused Idempotency-Key, a taken email)."""

    status_code = 409
    code = "CONFLICT"


class Unprocessable(ApiError):
    """Well-formed but breaks a rule (amount, currency, wallet state). Nothing was recorded."""

    status_code = 422
    code = "UNPROCESSABLE"


class RateLimited(ApiError):
    """Too many requests for this client or key (``RATE_LIMITED``), or too many failed
    authentications from this address (``AUTH_RATE_LIMITED``). Caller: wait the
    ``Retry-After`` seconds; ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` say the
    bucket's size, what is left and when it is full again."""

    status_code = 429
    code = "RATE_LIMITED"


class Unavailable(ApiError):
    """A backing service (Kafka, PostgreSQL) did not answer in time. Caller: retry with the
    same Idempotency-Key; operator: check `walletpipe status`."""

    status_code = 503
    code = "UNAVAILABLE"


class NotAccepted(Unavailable):
    """PostgreSQL or Kafka was away before anything was recorded: the request is surely NOT
    accepted and nothing was published. Caller: retry (the same Idempotency-Key is fine)."""

    code = "UNAVAILABLE_NOT_ACCEPTED"


class OutcomeUnknown(Unavailable):
    """PostgreSQL or Kafka failed while or after the request was recorded: it may have been
    accepted (a recorded request is published later by the API itself). Caller: retry with
    the SAME Idempotency-Key, which returns the first answer and never moves money twice."""

    code = "UNAVAILABLE_OUTCOME_UNKNOWN"

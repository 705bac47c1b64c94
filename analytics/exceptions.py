"""Errors of the analytics service. Each carries a stable ``code`` and its HTTP status; the
docstring says what the caller or operator should do."""

from __future__ import annotations


class AnalyticsError(Exception):
    """Root of every analytics error. ``code`` is stable, ``message`` is for humans."""

    code = "ANALYTICS_ERROR"
    status = 500

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        #: Response headers the answer must carry (Retry-After and RateLimit-* of a 429).
        self.headers = headers


class ReportError(AnalyticsError):
    """A report request that cannot be answered as asked (range, granularity, period).

    Caller: fix the parameters named in the message; nothing was computed.
    """

    code = "INVALID_REPORT_REQUEST"
    status = 422


class UnknownReport(AnalyticsError):
    """No report has this name. Caller: see /openapi.json for the reports there are."""

    code = "UNKNOWN_REPORT"
    status = 404


class AuthenticationError(AnalyticsError):
    """No API key, or one PostgreSQL does not know (``INVALID_API_KEY``), or a revoked or
    expired one (``API_KEY_REVOKED``, ``API_KEY_EXPIRED``). Caller: send X-API-Key (an
    operator issues one with `walletpipe keys create --client N --role analyst`)."""

    code = "INVALID_API_KEY"
    status = 401


class ReportForbidden(AnalyticsError):
    """The key's role may not read this report (a regulator asking for analyst data, an
    analyst asking for regulatory reports). Caller: use a key of the right role."""

    code = "REPORT_FORBIDDEN_FOR_ROLE"
    status = 403


class RateLimited(AnalyticsError):
    """Too many reports for this client or key (``RATE_LIMITED``), or too many failed
    authentications from this address (``AUTH_RATE_LIMITED``). Caller: wait the
    ``Retry-After`` seconds (RateLimit-* headers say the bucket's size and state)."""

    code = "RATE_LIMITED"
    status = 429


class AuthUnavailable(AnalyticsError):
    """PostgreSQL could not be asked about the key. Operator: check DATABASE_URL and that
    PostgreSQL runs; callers may retry."""

    code = "AUTH_UNAVAILABLE"
    status = 503


class TooMuchData(ReportError):
    """The range holds more rows than one request may process. Caller: ask for a shorter
    range (or an operator raises regulatory_rows_max)."""

    code = "TOO_MUCH_DATA"


class SigningKeyMissing(AnalyticsError):
    """Exports cannot be signed: no REGULATORY_SIGNING_KEY and no key file location (a
    ClickHouse server is used). Operator: set REGULATORY_SIGNING_KEY or
    REGULATORY_SIGNING_KEY_FILE."""

    code = "SIGNING_KEY_MISSING"
    status = 503


class ManifestInvalid(AnalyticsError):
    """An export's manifest signature or a file's sha256 does not match. Whoever received
    it: do not trust the files; ask for the export again."""

    code = "MANIFEST_INVALID"
    status = 422


class SinkInterrupted(AnalyticsError):
    """The sink could not finish a batch (Kafka did not take its dead letters, or it failed
    storing). Nothing was committed: the sink consumes again from the committed offsets after
    a pause, and the table drops the event ids it already holds. Operator: if it repeats,
    the service log and ``/health`` (``sink_last_error``) name the cause."""

    code = "SINK_INTERRUPTED"

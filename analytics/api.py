"""The reporting API under /v1/reports: authenticate → authorize → check → query → answer.

Every route is thin: the rules are in ``auth``, ``ranges``, ``reports``, ``regulatory`` and
``export``. Errors are JSON ``{"error": {"code", "message"}}`` with a stable code.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_CEILING
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.routing import APIRoute

from analytics import export, history, reports
from analytics.auth import READERS, Principal, audience_of, authorize
from analytics.errors import ERROR_RESPONSES
from analytics.exceptions import AuthenticationError, UnknownReport
from analytics.ranges import (
    Granularity,
    ReportRange,
    business_zone,
    parse_period,
    report_range,
    time_range,
)
from analytics.regulatory import ReportType
from analytics.regulatory_source import RegulatorySource
from analytics.settings import AnalyticsSettings
from domain.inputs import CanonicalUuid
from domain.transactions import TransactionType as TransactionKind

Start = Annotated[datetime | None, Query(alias="from", description="ISO-8601 with a zone")]
End = Annotated[datetime | None, Query(alias="to", description="exclusive; default now")]
GranularityText = Annotated[
    str | None,
    Query(
        max_length=16,
        description="minute (default), hour or day",
        json_schema_extra={"enum": [g.value for g in Granularity]},
    ),
]
Currency = Annotated[
    str, Query(pattern=r"^([A-Z]{3})?$", description="only this currency (ISO 4217, e.g. USD)")
]
TransactionType = Annotated[
    str,
    Query(
        pattern=f"^({'|'.join(t.value for t in TransactionKind)})?$",
        description="only this type",
    ),
]
#: A business day (2026-01-31) or month (2026-01); parse_period says which is wrong.
PeriodText = Annotated[
    str,
    Query(
        max_length=10,
        description="a business day 2026-01-31 or month 2026-01",
        json_schema_extra={"pattern": r"^[0-9]{4}-[0-9]{2}(-[0-9]{2})?$"},
    ),
]

router = APIRouter(responses=ERROR_RESPONSES)


def _settings(request: Request) -> AnalyticsSettings:
    return request.app.state.settings


def _principal(request: Request, api_key: str | None) -> Principal | None:
    """The caller, limited: its client's (and key's) bucket, and its address's key lookups."""
    address = request.client.host if request.client else "unknown"
    return request.app.state.clients.principal(api_key, address)  # type: ignore[no-any-return]


class ReportReader:
    """A dependency: the caller's key must let them read ``report``."""

    def __init__(self, report: str) -> None:
        self.report = report

    def __call__(
        self, request: Request, x_api_key: Annotated[str | None, Header()] = None
    ) -> Principal:
        principal = _principal(request, x_api_key)
        authorize(principal, self.report)
        assert principal is not None  # authorize refuses None
        return principal


def reader(report: str) -> Any:
    return Depends(ReportReader(report))


def document_roles(routes: APIRouter) -> APIRouter:
    """Append "Roles: ..." to each report's OpenAPI description, from ``auth.READERS``."""
    for route in routes.routes:
        if not isinstance(route, APIRoute) or "**Roles:**" in (route.description or ""):
            continue
        reports = [
            d.call.report for d in route.dependant.dependencies if isinstance(d.call, ReportReader)
        ]
        if reports:
            roles = ", ".join(sorted(READERS[audience_of(reports[0])]))
            route.description = f"{route.description}\n\n**Roles:** {roles}.".strip()
    return routes


def _range(request: Request, start: Any, end: Any, granularity: str | None) -> ReportRange:
    s = _settings(request)
    return report_range(
        start,
        end,
        granularity,
        days_max=s.report_range_days_max,
        points_max=s.report_points_max,
    )


def _fraud(request: Request) -> dict[str, Any]:
    s = _settings(request)
    high = int(s.high_risk_score.to_integral_value(rounding=ROUND_CEILING))
    return {"fraud_codes": tuple(s.fraud_reason_codes), "high_percent": high}


@router.get("/v1/reports/volume", dependencies=[reader("volume")])
def volume(
    request: Request,
    start: Start = None,
    end: End = None,
    granularity: GranularityText = None,
    currency: Currency = "",
    transaction_type: TransactionType = "",
) -> dict[str, Any]:
    """Events, amounts and fees per bucket by kind, decision, type, currency and status;
    ``rows`` totals the range by kind, type and currency."""
    rr = _range(request, start, end, granularity)
    return reports.volume(
        request.app.state.warehouse, rr, currency=currency, transaction_type=transaction_type
    )


@router.get("/v1/reports/approval-rates", dependencies=[reader("approval-rates")])
def approval_rates(
    request: Request,
    start: Start = None,
    end: End = None,
    granularity: GranularityText = None,
    currency: Currency = "",
    transaction_type: TransactionType = "",
) -> dict[str, Any]:
    """Approve / review / decline counts and rates per bucket and over the range."""
    rr = _range(request, start, end, granularity)
    return reports.approval_rates(
        request.app.state.warehouse, rr, currency=currency, transaction_type=transaction_type
    )


@router.get("/v1/reports/latency", dependencies=[reader("latency")])
def latency(
    request: Request,
    start: Start = None,
    end: End = None,
    granularity: GranularityText = None,
    transaction_type: TransactionType = "",
) -> dict[str, Any]:
    """Accept → complete latency (API acceptance to ledger commit): p50/p90/p99/max, ms."""
    rr = _range(request, start, end, granularity)
    return reports.latency(request.app.state.warehouse, rr, transaction_type=transaction_type)


@router.get("/v1/reports/fraud-rates", dependencies=[reader("fraud-rates")])
def fraud_rates(
    request: Request, start: Start = None, end: End = None, granularity: GranularityText = None
) -> dict[str, Any]:
    """Share of decisions declined as fraud, and share scored at or above high risk."""
    rr = _range(request, start, end, granularity)
    return reports.fraud_rates(request.app.state.warehouse, rr, **_fraud(request))


@router.get("/v1/reports/fraud-scores", dependencies=[reader("fraud-scores")])
def fraud_scores(
    request: Request,
    start: Start = None,
    end: End = None,
    bin_percent: Annotated[int, Query(ge=1, le=50)] = 5,
) -> dict[str, Any]:
    """Distribution of decisions' risk scores, by decision."""
    rr = _range(request, start, end, "day")
    return reports.fraud_scores(request.app.state.warehouse, rr, bin_percent=bin_percent)


@router.get("/v1/reports/decline-reasons", dependencies=[reader("decline-reasons")])
def decline_reasons(
    request: Request,
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """The most frequent reasons of declines (stream) and failures (ledger)."""
    rr = _range(request, start, end, "day")
    return reports.decline_reasons(request.app.state.warehouse, rr, limit=limit)


@router.get("/v1/reports/model-scores", dependencies=[reader("model-scores")])
def model_scores(
    request: Request,
    start: Start = None,
    end: End = None,
    bin_percent: Annotated[int, Query(ge=1, le=50)] = 10,
) -> dict[str, Any]:
    """Champion against challengers: each model's scores of the decisions (count, mean,
    median, p90, per decision, distance to the champion's score, distribution)."""
    rr = _range(request, start, end, "day")  # the range on whole hours, as fraud-scores
    return reports.model_scores(request.app.state.warehouse, rr, bin_percent=bin_percent)


@router.get("/v1/reports/dashboard", dependencies=[reader("dashboard")])
def dashboard(
    request: Request, minutes: Annotated[int, Query(ge=5, le=1440)] = 60
) -> dict[str, Any]:
    """Every panel of /dashboard over the last ``minutes``, per minute."""
    now = datetime.now().astimezone()
    rr = _range(request, now - timedelta(minutes=minutes), now, "minute")
    return reports.dashboard(request.app.state.warehouse, rr, **_fraud(request))


@router.get("/v1/reports/transactions/{transaction_id}", dependencies=[reader("transactions")])
def transaction(request: Request, transaction_id: CanonicalUuid) -> dict[str, Any]:
    """Every stored event of one transaction, in time order."""
    events = reports.transaction_events(request.app.state.warehouse, str(transaction_id))
    return {"transaction_id": str(transaction_id), "events": events}


#: A backtest reads its range plus a warm-up of at most this many days before it.
BACKTEST_WARMUP_DAYS_MAX = 31


@router.get("/v1/reports/backtest/history", dependencies=[reader("backtest/history")])
def backtest_history(request: Request, start: Start = None, end: End = None) -> dict[str, Any]:
    """Every request in the range with the stream's first decision on it (``decision``,
    ``risk_score``) and stored fraud labels (``labels``: null when none are stored), for
    ``walletpipe models backtest``. At most ``BACKTEST_ROWS_MAX`` rows (else 422
    TOO_MUCH_DATA)."""
    s = _settings(request)
    days_max = s.report_range_days_max + BACKTEST_WARMUP_DAYS_MAX
    start, end = time_range(start, end, days_max=days_max)
    db = request.app.state.warehouse
    rows = history.decision_history(db, start, end, s.backtest_rows_max)
    labels = history.stored_labels(db, start, end)
    return {
        "from": start,
        "to": end,
        "columns": list(history.HISTORY_COLUMNS),
        "rows": [history.as_json(row) for row in rows],
        "labels": None if labels is None else {str(k): v for k, v in labels.items()},
    }


def _regulatory(request: Request, start: Any, end: Any, category: str) -> dict[str, Any]:
    s = _settings(request)
    start, end = time_range(start, end, days_max=s.regulatory_export_days_max)
    source = RegulatorySource(request.app.state.warehouse, s)
    found = [
        r.to_record() for r in source.reports(start, end) if r.report_type.category == category
    ]
    return {"from": start, "to": end, "count": len(found), "reports": found}


@router.get(
    "/v1/reports/regulatory/currency-transactions",
    dependencies=[reader("regulatory/currency-transactions")],
)
def currency_transactions(request: Request, start: Start = None, end: End = None) -> dict:
    """Currency transaction reports (per user, business day, currency and direction)."""
    return _regulatory(request, start, end, ReportType.CURRENCY_TRANSACTION.category)


@router.get(
    "/v1/reports/regulatory/suspicious-activity",
    dependencies=[reader("regulatory/suspicious-activity")],
)
def suspicious_activity(request: Request, start: Start = None, end: End = None) -> dict:
    """Suspicious activity candidates: structuring, rapid in-and-out, high risk scores."""
    return _regulatory(request, start, end, "SAR")


@router.get("/v1/reports/regulatory/export", dependencies=[reader("regulatory/export")])
def regulatory_export(
    request: Request,
    period: PeriodText,
) -> dict[str, Any]:
    """A period's reports as CSV and JSON plus a signed manifest; the same period gives
    byte-identical files. ``files`` maps each file name to its UTF-8 text."""
    s = _settings(request)
    zone = business_zone(s.business_timezone)
    checked = parse_period(period, zone, days_max=s.regulatory_export_days_max)
    found = RegulatorySource(request.app.state.warehouse, s).reports(checked.start, checked.end)
    built = export.build(checked, s.business_timezone, found, request.app.state.signing_key())
    return {
        "manifest": built.manifest_name,
        "files": {name: data.decode() for name, data in built.files.items()},
    }


@router.get("/v1/reports/{name:path}")
def unknown(
    request: Request,
    name: Annotated[str, Path()],
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """Any other name: 401 without a valid key, else 404 UNKNOWN_REPORT."""
    if _principal(request, x_api_key) is None:
        raise AuthenticationError("send your reporting key in X-API-Key", code="MISSING_API_KEY")
    raise UnknownReport(f"there is no report {name!r}; the reports are in /openapi.json")

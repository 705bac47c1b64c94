"""Who may read which report. Pure: the key lookup itself lives in ``clients``.

Analysts read the analytics reports, regulators only the regulatory ones, admins both;
a plain API client (POS, app, partner) reads none.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from analytics.exceptions import AuthenticationError, ReportForbidden, UnknownReport


class Role(StrEnum):
    CLIENT = "client"
    ANALYST = "analyst"
    REGULATOR = "regulator"
    ADMIN = "admin"


class Audience(StrEnum):
    ANALYTICS = "analytics"
    REGULATORY = "regulatory"


#: Every report name under /v1/reports, and whose data it is.
REPORTS: dict[str, Audience] = {
    "volume": Audience.ANALYTICS,
    "approval-rates": Audience.ANALYTICS,
    "latency": Audience.ANALYTICS,
    "fraud-rates": Audience.ANALYTICS,
    "fraud-scores": Audience.ANALYTICS,
    "decline-reasons": Audience.ANALYTICS,
    "model-scores": Audience.ANALYTICS,
    "dashboard": Audience.ANALYTICS,
    "transactions": Audience.ANALYTICS,
    "backtest/history": Audience.ANALYTICS,
    "regulatory/currency-transactions": Audience.REGULATORY,
    "regulatory/suspicious-activity": Audience.REGULATORY,
    "regulatory/export": Audience.REGULATORY,
}

_READS: dict[Role, frozenset[Audience]] = {
    Role.CLIENT: frozenset(),
    Role.ANALYST: frozenset({Audience.ANALYTICS}),
    Role.REGULATOR: frozenset({Audience.REGULATORY}),
    Role.ADMIN: frozenset(Audience),
}


@dataclass(frozen=True)
class Principal:
    """The caller behind an API key."""

    client_id: str
    name: str
    role: Role


def hash_api_key(api_key: str) -> str:
    """How api_clients stores a key: sha256 hex, so the database never holds the secret."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def audience_of(report: str) -> Audience:
    try:
        return REPORTS[report]
    except KeyError:
        raise UnknownReport(f"there is no report {report!r}") from None


def authorize(principal: Principal | None, report: str) -> Audience:
    """Raise unless ``principal`` may read ``report``; unknown names are 404 for anyone
    authenticated (and 401 before that, so names are not probed without a key)."""
    if principal is None:
        raise AuthenticationError("send your reporting key in X-API-Key", code="MISSING_API_KEY")
    audience = audience_of(report)
    if audience not in _READS[principal.role]:
        raise ReportForbidden(
            f"role {principal.role.value} may not read the {audience.value} report {report!r}"
        )
    return audience

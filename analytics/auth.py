"""Who may read which report. Pure: the key lookup itself lives in ``clients``.

Analysts read the analytics reports, regulators only the regulatory ones, compliance
officers and admins both; the keys of apps, POS terminals and partners read none. The roles
are the API keys' (domain/access.py); a key with several roles reads what any of them may.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from analytics.exceptions import AuthenticationError, ReportForbidden, UnknownReport
from domain.access import KeyGrant, Role, hash_api_key

__all__ = ["REPORTS", "Audience", "Principal", "Role", "authorize", "hash_api_key"]


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

#: Which audiences' reports each role reads (the roles of ``/openapi.json``'s descriptions).
READERS: dict[Audience, frozenset[Role]] = {
    Audience.ANALYTICS: frozenset({Role.ANALYST, Role.COMPLIANCE, Role.ADMIN}),
    Audience.REGULATORY: frozenset({Role.REGULATOR, Role.COMPLIANCE, Role.ADMIN}),
}


@dataclass(frozen=True)
class Principal:
    """The caller behind an API key."""

    client_id: str
    name: str
    roles: frozenset[Role]
    #: The key as looked up (limits, expiry); None in tests that make principals by hand.
    grant: KeyGrant | None = None


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
    if principal.roles.isdisjoint(READERS[audience]):
        roles = ", ".join(sorted(principal.roles))
        raise ReportForbidden(
            f"roles {roles} may not read the {audience.value} report {report!r}; it needs "
            f"one of {', '.join(sorted(READERS[audience]))}"
        )
    return audience

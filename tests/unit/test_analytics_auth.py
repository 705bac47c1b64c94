"""analytics.auth: analysts read analytics, regulators only regulatory reports, compliance
officers and admins both, the keys of apps, terminals and partners none."""

from __future__ import annotations

import pytest

from analytics.auth import REPORTS, Audience, Principal, Role, authorize, hash_api_key
from analytics.exceptions import AuthenticationError, ReportForbidden, UnknownReport

ANALYTICS = sorted(name for name, audience in REPORTS.items() if audience is Audience.ANALYTICS)
REGULATORY = sorted(name for name, audience in REPORTS.items() if audience is Audience.REGULATORY)


def who(*roles: Role) -> Principal:
    return Principal(client_id="c", name="c", roles=frozenset(roles))


def test_there_are_reports_of_both_audiences() -> None:
    assert "volume" in ANALYTICS and "latency" in ANALYTICS and "fraud-rates" in ANALYTICS
    assert "regulatory/export" in REGULATORY


@pytest.mark.parametrize("report", ANALYTICS)
def test_analysts_read_analytics_and_regulators_do_not(report: str) -> None:
    assert authorize(who(Role.ANALYST), report) is Audience.ANALYTICS
    with pytest.raises(ReportForbidden) as caught:
        authorize(who(Role.REGULATOR), report)
    assert caught.value.code == "REPORT_FORBIDDEN_FOR_ROLE" and caught.value.status == 403


@pytest.mark.parametrize("report", REGULATORY)
def test_regulators_read_regulatory_reports_and_analysts_do_not(report: str) -> None:
    assert authorize(who(Role.REGULATOR), report) is Audience.REGULATORY
    with pytest.raises(ReportForbidden):
        authorize(who(Role.ANALYST), report)


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_admins_and_compliance_read_everything_and_tenants_nothing(report: str) -> None:
    authorize(who(Role.ADMIN), report)
    authorize(who(Role.COMPLIANCE), report)
    with pytest.raises(ReportForbidden):
        authorize(who(Role.CUSTOMER_APP, Role.POS, Role.PARTNER), report)


@pytest.mark.parametrize("report", sorted(REPORTS))
def test_a_key_with_several_roles_reads_what_any_of_them_may(report: str) -> None:
    authorize(who(Role.ANALYST, Role.REGULATOR), report)


def test_no_key_is_401_before_the_name_is_looked_at() -> None:
    with pytest.raises(AuthenticationError) as caught:
        authorize(None, "no-such-report")
    assert (caught.value.code, caught.value.status) == ("MISSING_API_KEY", 401)


def test_an_unknown_report_is_404() -> None:
    with pytest.raises(UnknownReport) as caught:
        authorize(who(Role.ANALYST), "profit-forecast")
    assert (caught.value.code, caught.value.status) == ("UNKNOWN_REPORT", 404)


def test_keys_are_stored_as_sha256_hex_as_the_ingest_api_stores_them() -> None:
    digest = hash_api_key("wp_analyst_secret")
    assert len(digest) == 64 and digest == hash_api_key("wp_analyst_secret")
    assert "secret" not in digest

"""analytics.ranges: report ranges, granularities and export periods, checked up front."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from analytics.exceptions import ReportError
from analytics.ranges import (
    Granularity,
    parse_period,
    report_range,
    time_range,
)

NOW = datetime(2026, 3, 10, 12, 30, 45, tzinfo=UTC)


def codes(call) -> str:  # noqa: ANN001
    with pytest.raises(ReportError) as caught:
        call()
    return caught.value.code


def test_default_range_is_the_last_day() -> None:
    start, end = time_range(None, None, days_max=366, now=NOW)
    assert (start, end) == (NOW - timedelta(days=1), NOW)


def test_inverted_and_empty_ranges_are_refused() -> None:
    assert codes(lambda: time_range(NOW, NOW - timedelta(hours=1), days_max=366)) == "INVALID_RANGE"
    assert codes(lambda: time_range(NOW, NOW, days_max=366)) == "INVALID_RANGE"


def test_a_huge_range_is_refused() -> None:
    start = NOW - timedelta(days=367)
    assert codes(lambda: time_range(start, NOW, days_max=366)) == "RANGE_TOO_LARGE"
    assert time_range(NOW - timedelta(days=366), NOW, days_max=366)[0] == NOW - timedelta(days=366)


def test_times_without_a_zone_are_refused() -> None:
    naive = datetime(2026, 3, 10, 12, 0)
    assert codes(lambda: time_range(naive, None, days_max=366, now=NOW)) == "INVALID_RANGE"


def test_other_zones_are_converted_to_utc() -> None:
    start, _ = time_range(
        datetime(2026, 3, 10, 8, 0, tzinfo=ZoneInfo("America/New_York")), NOW, days_max=1
    )
    assert start == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # EDT, UTC-4


def test_minute_buckets_widen_the_range_to_whole_minutes() -> None:
    checked = report_range(
        NOW - timedelta(hours=2), NOW, "minute", days_max=366, points_max=1_000, now=NOW
    )
    assert checked.start == datetime(2026, 3, 10, 10, 30, tzinfo=UTC)
    assert checked.end == datetime(2026, 3, 10, 12, 31, tzinfo=UTC)
    assert (checked.points, checked.grain) == (121, "minute")


def test_hour_and_day_buckets_widen_the_range_to_whole_hours() -> None:
    checked = report_range(
        NOW - timedelta(hours=2), NOW, "hour", days_max=366, points_max=100, now=NOW
    )
    assert checked.start == datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    assert checked.end == datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
    assert checked.granularity is Granularity.HOUR
    assert (checked.points, checked.grain) == (3, "hour")
    days = report_range(NOW - timedelta(days=2), NOW, "day", days_max=366, points_max=10)
    assert (days.grain, days.start.minute, days.points) == ("hour", 0, 3)


def test_too_many_points_and_unknown_granularity_are_refused() -> None:
    week = NOW - timedelta(days=7)
    assert (
        codes(lambda: report_range(week, NOW, "minute", days_max=366, points_max=5_000))
        == "TOO_MANY_POINTS"
    )
    assert report_range(week, NOW, "hour", days_max=366, points_max=5_000).points == 169
    assert (
        codes(lambda: report_range(week, NOW, "week", days_max=366, points_max=5_000))
        == "INVALID_GRANULARITY"
    )


def test_periods_are_business_days_or_months_in_the_business_zone() -> None:
    utc = ZoneInfo("UTC")
    day = parse_period("2026-02-28", utc, days_max=92)
    assert (day.start, day.end) == (
        datetime(2026, 2, 28, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    december = parse_period("2025-12", utc, days_max=92)
    assert december.end == datetime(2026, 1, 1, tzinfo=UTC)
    tokyo = parse_period("2026-01-01", ZoneInfo("Asia/Tokyo"), days_max=92)
    assert tokyo.start == datetime(2025, 12, 31, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "2026", "2026-13", "2026-02-30", "last month", "2026-1"])
def test_bad_periods_are_refused(text: str) -> None:
    assert codes(lambda: parse_period(text, ZoneInfo("UTC"), days_max=92)) == "INVALID_PERIOD"


def test_a_month_is_too_long_when_exports_are_capped_below_it() -> None:
    assert codes(lambda: parse_period("2026-01", ZoneInfo("UTC"), days_max=7)) == "RANGE_TOO_LARGE"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, datetime(999, 1, 1, tzinfo=UTC)),  # the fuzzed to=0999-01-01T00:00Z
        (None, datetime(1, 1, 1, tzinfo=UTC)),  # its default 'from' would not even exist
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), NOW),  # overflows UTC
        (datetime(9999, 12, 31, tzinfo=timezone(timedelta(hours=-1))), None),
        (datetime(1969, 12, 31, 23, 59, tzinfo=UTC), datetime(1970, 1, 1, 1, tzinfo=UTC)),
        (NOW, datetime(2100, 1, 1, 0, 1, tzinfo=UTC)),
        (None, datetime(1970, 1, 1, 12, tzinfo=UTC)),  # from = to - 1 day is before 1970
    ],
)
def test_times_outside_what_the_warehouse_holds_are_refused(
    start: datetime | None, end: datetime | None
) -> None:
    assert codes(lambda: time_range(start, end, days_max=10**6, now=NOW)) == "INVALID_RANGE"
    assert (
        codes(lambda: report_range(start, end, "day", days_max=10**6, points_max=10**9, now=NOW))
        == "INVALID_RANGE"
    )


def test_the_bounds_themselves_are_allowed() -> None:
    start, end = datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 2, tzinfo=UTC)
    assert time_range(start, end, days_max=1) == (start, end)
    start, end = datetime(2099, 12, 31, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    assert time_range(start, end, days_max=1) == (start, end)


@pytest.mark.parametrize("text", ["0999-01", "0001-01-01", "1969-12-31", "2100-01", "9999-12-31"])
def test_export_periods_outside_the_warehouse_years_are_refused(text: str) -> None:
    zone = ZoneInfo("Europe/Berlin")
    assert codes(lambda: parse_period(text, zone, days_max=31)) == "INVALID_PERIOD"

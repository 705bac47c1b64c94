"""Time ranges, granularities and export periods: checked before any query runs. Pure.

Roll-ups hold whole minutes and whole hours, so a report range is widened to them: to whole
minutes for minute buckets, to whole hours for hour and day buckets (``from`` floored, ``to``
ceiled); the answer states the range it covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from analytics.exceptions import ReportError

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DEFAULT_SPAN = timedelta(days=1)
#: The times a report may name: the roll-ups store ClickHouse ``DateTime`` (1970 to 2106),
#: and a year like 0999 must be a 422, not a query that fails.
TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2100, 1, 1, tzinfo=UTC)


class Granularity(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def step(self) -> timedelta:
        return {"minute": MINUTE, "hour": timedelta(hours=1), "day": timedelta(days=1)}[self]

    @property
    def sql_interval(self) -> str:
        """For ``toStartOfInterval``; a fixed literal per member, never caller text."""
        return {"minute": "INTERVAL 1 MINUTE", "hour": "INTERVAL 1 HOUR", "day": "INTERVAL 1 DAY"}[
            self
        ]


@dataclass(frozen=True)
class ReportRange:
    start: datetime
    end: datetime
    granularity: Granularity

    @property
    def points(self) -> int:
        return -(-(self.end - self.start) // self.granularity.step)

    @property
    def grain(self) -> str:
        """The roll-up resolution the range is on: ``minute`` or ``hour``."""
        return "minute" if self.granularity is Granularity.MINUTE else "hour"


def parse_granularity(text: str | None) -> Granularity:
    try:
        return Granularity(text or "minute")
    except ValueError:
        choices = ", ".join(g.value for g in Granularity)
        raise ReportError(
            f"granularity {text!r} is not one of {choices}", code="INVALID_GRANULARITY"
        ) from None


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def ceil_minute(moment: datetime) -> datetime:
    floored = floor_minute(moment)
    return floored if floored == moment else floored + MINUTE


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + HOUR


def time_range(
    start: datetime | None,
    end: datetime | None,
    *,
    days_max: int,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    """The caller's [from, to): default the last day; aware times; ordered; bounded."""
    if (start is not None and start.tzinfo is None) or (end is not None and end.tzinfo is None):
        raise ReportError(
            "give times with a timezone, e.g. 2026-01-01T00:00Z", code="INVALID_RANGE"
        )
    end = _within_bounds(end or now or datetime.now(UTC), "to")
    start = _within_bounds(start or end - DEFAULT_SPAN, "from")
    if start >= end:
        raise ReportError("'from' must be before 'to'", code="INVALID_RANGE")
    if end - start > timedelta(days=days_max):
        raise ReportError(f"a report spans at most {days_max} days", code="RANGE_TOO_LARGE")
    return start, end


def _within_bounds(moment: datetime, name: str) -> datetime:
    """``moment`` in UTC, if between ``TIME_MIN`` and ``TIME_MAX``."""
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # year 1 at +01:00, year 9999 at -01:00
        utc = None
    if utc is None or not TIME_MIN <= utc <= TIME_MAX:
        raise ReportError(
            f"{name!r} must be between {TIME_MIN:%Y-%m-%d} and {TIME_MAX:%Y-%m-%d} (UTC)",
            code="INVALID_RANGE",
        )
    return utc


def report_range(
    start: datetime | None,
    end: datetime | None,
    granularity: str | None,
    *,
    days_max: int,
    points_max: int,
    now: datetime | None = None,
) -> ReportRange:
    """A checked range on whole minutes, with no more buckets than ``points_max``."""
    start, end = time_range(start, end, days_max=days_max, now=now)
    buckets = parse_granularity(granularity)
    if buckets is Granularity.MINUTE:
        checked = ReportRange(floor_minute(start), ceil_minute(end), buckets)
    else:
        checked = ReportRange(floor_hour(start), ceil_hour(end), buckets)
    if checked.points > points_max:
        raise ReportError(
            f"{checked.points} {checked.granularity.value} buckets asked, at most {points_max}: "
            "use a coarser granularity or a shorter range",
            code="TOO_MANY_POINTS",
        )
    return checked


def business_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"unknown time zone {name!r}", code="INVALID_TIMEZONE") from None


_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Period:
    """An export period: a business day (``2026-01-31``) or month (``2026-01``)."""

    label: str
    start: datetime
    end: datetime


def parse_period(text: str | None, zone: ZoneInfo, *, days_max: int) -> Period:
    text = (text or "").strip()
    try:
        if match := _DAY.match(text):
            first = date(int(match[1]), int(match[2]), int(match[3]))
            after = first + timedelta(days=1)
        elif match := _MONTH.match(text):
            first = date(int(match[1]), int(match[2]), 1)
            after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        else:
            raise ValueError(text)
    except (ValueError, OverflowError):  # month 13, or the day after 9999-12-31
        raise ReportError(
            f"period {text!r} is neither a day (2026-01-31) nor a month (2026-01)",
            code="INVALID_PERIOD",
        ) from None
    if not TIME_MIN.year <= first.year < TIME_MAX.year:
        raise ReportError(
            f"period {text!r} is not between {TIME_MIN.year} and {TIME_MAX.year - 1}",
            code="INVALID_PERIOD",
        )
    start = datetime(first.year, first.month, first.day, tzinfo=zone).astimezone(UTC)
    end = datetime(after.year, after.month, after.day, tzinfo=zone).astimezone(UTC)
    if end - start > timedelta(days=days_max):
        raise ReportError(f"an export spans at most {days_max} days", code="RANGE_TOO_LARGE")
    return Period(text, start, end)

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
    end = end or now or datetime.now(UTC)
    start = start or end - DEFAULT_SPAN
    if start.tzinfo is None or end.tzinfo is None:
        raise ReportError(
            "give times with a timezone, e.g. 2026-01-01T00:00Z", code="INVALID_RANGE"
        )
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if start >= end:
        raise ReportError("'from' must be before 'to'", code="INVALID_RANGE")
    if end - start > timedelta(days=days_max):
        raise ReportError(f"a report spans at most {days_max} days", code="RANGE_TOO_LARGE")
    return start, end


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
    except ValueError:
        raise ReportError(
            f"period {text!r} is neither a day (2026-01-31) nor a month (2026-01)",
            code="INVALID_PERIOD",
        ) from None
    start = datetime(first.year, first.month, first.day, tzinfo=zone).astimezone(UTC)
    end = datetime(after.year, after.month, after.day, tzinfo=zone).astimezone(UTC)
    if end - start > timedelta(days=days_max):
        raise ReportError(f"an export spans at most {days_max} days", code="RANGE_TOO_LARGE")
    return Period(text, start, end)

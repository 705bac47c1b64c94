"""Spending limits: periods on the UTC calendar and what one limit is.

Pure. A limit caps, per transaction type, what one wallet (or every wallet of one user) may
move in a period: ``max_amount`` (sum of amounts, fees excluded) and ``max_count``. Periods
are calendar periods in UTC: a day from midnight, an ISO week from Monday, a month from its
first day, a year from January 1st.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from domain.transactions import TransactionType


class LimitPeriod(StrEnum):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"
    YEARLY = "YEARLY"


class LimitScope(StrEnum):
    USER = "USER"
    WALLET = "WALLET"


class KycStatus(StrEnum):
    PENDING = "PENDING"
    VERIFIED = "VERIFIED"
    REJECTED = "REJECTED"


#: How many limits one user or one wallet may have (each type x period at most once).
LIMITS_PER_SCOPE_MAX = len(TransactionType) * len(LimitPeriod)


def period_start(at: datetime, period: LimitPeriod) -> datetime:
    """The UTC instant the period containing ``at`` began.

    >>> period_start(datetime(2026, 3, 5, 17, 30, tzinfo=UTC), LimitPeriod.WEEKLY)
    datetime.datetime(2026, 3, 2, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if at.tzinfo is None:
        raise ValueError("limit periods need an aware datetime")
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period is LimitPeriod.DAILY:
        return day
    if period is LimitPeriod.WEEKLY:
        return day - timedelta(days=day.weekday())
    if period is LimitPeriod.MONTHLY:
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def period_end(at: datetime, period: LimitPeriod) -> datetime:
    """The UTC instant the period containing ``at`` ends (the next one's start)."""
    start = period_start(at, period)
    if period is LimitPeriod.DAILY:
        return start + timedelta(days=1)
    if period is LimitPeriod.WEEKLY:
        return start + timedelta(days=7)
    if period is LimitPeriod.MONTHLY:
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start.replace(year=start.year + 1)


def limit_label(
    limit_id: uuid.UUID | str,
    scope: LimitScope,
    transaction_type: TransactionType,
    period: LimitPeriod,
    max_amount: Decimal,
    max_count: int,
) -> str:
    """How a rejection names the limit it hit."""
    return (
        f"{scope} {period} {transaction_type} limit {limit_id} "
        f"(max_amount {max_amount}, max_count {max_count})"
    )

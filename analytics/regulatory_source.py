"""Load what the regulatory detectors need from ``pipeline_events``, and run them.

SQL only narrows the rows (candidate users and wallets); the rules themselves are the pure
functions of ``analytics.regulatory``. Every load is bounded by ``regulatory_rows_max``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from analytics.clickhouse import Warehouse
from analytics.exceptions import TooMuchData
from analytics.ranges import business_zone
from analytics.regulatory import Movement, Report, Rules, detect
from analytics.settings import AnalyticsSettings

DECISION_KINDS = ("approved", "rejected", "review", "held_for_review")
_COLUMNS = """transaction_id, transaction_type, event_time, toString(amount), currency_code,
    source_user_id, destination_user_id, source_wallet_id, destination_wallet_id"""

_MOVES_SQL = f"""
WITH posted AS (
    SELECT * FROM pipeline_events FINAL
     WHERE event_kind = 'posted'
       AND event_time >= {{start:DateTime64(3)}} AND event_time < {{end:DateTime64(3)}}
),
cash_days AS (
    SELECT if(transaction_type = 'DEPOSIT', destination_user_id, source_user_id) AS user_id,
           toDate(event_time, {{zone:String}}) AS day, currency_code, transaction_type
      FROM posted WHERE transaction_type IN ('DEPOSIT', 'WITHDRAWAL')
     GROUP BY user_id, day, currency_code, transaction_type
    HAVING sum(amount) > {{ctr_threshold:Decimal(38, 4)}}
),
in_out_wallets AS (
    SELECT destination_wallet_id AS wallet_id FROM posted
     WHERE transaction_type IN ('DEPOSIT', 'TRANSFER') AND destination_wallet_id IS NOT NULL
     GROUP BY wallet_id HAVING sum(amount) >= {{in_out_min:Decimal(38, 4)}}
    INTERSECT
    SELECT source_wallet_id AS wallet_id FROM posted
     WHERE transaction_type IN ('WITHDRAWAL', 'TRANSFER', 'PAYMENT')
       AND source_wallet_id IS NOT NULL
)
SELECT {_COLUMNS} FROM posted
 WHERE (transaction_type = 'DEPOSIT'
        AND amount >= {{structuring_min:Decimal(38, 4)}}
        AND amount <= {{structuring_max:Decimal(38, 4)}})
    OR ((if(transaction_type = 'DEPOSIT', destination_user_id, source_user_id),
         toDate(event_time, {{zone:String}}), currency_code, transaction_type) IN cash_days)
    OR destination_wallet_id IN in_out_wallets
    OR source_wallet_id IN in_out_wallets
 ORDER BY event_time, transaction_id
 LIMIT {{limit:UInt64}}"""

_DECISIONS_SQL = f"""
SELECT {_COLUMNS}, toString(round(toFloat64(risk_score), 2)) AS score, decision
  FROM pipeline_events FINAL
 WHERE event_kind IN {{kinds:Array(String)}}
   AND event_time >= {{start:DateTime64(3)}} AND event_time < {{end:DateTime64(3)}}
   AND risk_score IS NOT NULL AND round(toFloat64(risk_score), 2) >= {{threshold:Float64}}
 ORDER BY event_time, transaction_id
 LIMIT {{limit:UInt64}}"""


def rules_from(settings: AnalyticsSettings) -> Rules:
    return Rules(
        ctr_threshold=settings.ctr_threshold,
        structuring_amount_min=settings.structuring_amount_min,
        structuring_amount_max=settings.structuring_amount_max,
        structuring_count_24h_min=settings.structuring_count_24h_min,
        structuring_count_7d_min=settings.structuring_count_7d_min,
        in_out_window=timedelta(hours=settings.in_out_window_hours),
        in_out_amount_min=settings.in_out_amount_min,
        in_out_ratio_min=settings.in_out_ratio_min,
        high_risk_score=settings.high_risk_score,
        business_zone=business_zone(settings.business_timezone),
    )


def utc(moment: datetime) -> datetime:
    """chDB hands DateTime64('UTC') back naive; every time in this package is aware."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _movement(row: tuple[Any, ...]) -> Movement:
    score = Decimal(row[9]) if len(row) > 9 and row[9] is not None else None
    return Movement(
        transaction_id=row[0],
        transaction_type=row[1],
        at=utc(row[2]),
        amount=Decimal(row[3]),
        currency_code=row[4],
        source_user_id=row[5],
        destination_user_id=row[6],
        source_wallet_id=row[7],
        destination_wallet_id=row[8],
        risk_score=score,
        decision=row[10] if len(row) > 10 else "",
    )


class RegulatorySource:
    def __init__(self, warehouse: Warehouse, settings: AnalyticsSettings) -> None:
        self.warehouse = warehouse
        self.settings = settings
        self.rules = rules_from(settings)

    def _bounded(self, sql: str, parameters: dict[str, Any]) -> list[Movement]:
        rows_max = self.settings.regulatory_rows_max
        rows = self.warehouse.query(sql, {**parameters, "limit": rows_max + 1})
        if len(rows) > rows_max:
            raise TooMuchData(
                f"more than {rows_max} candidate transactions in the range: ask for less"
            )
        return [_movement(row) for row in rows]

    def movements(self, start: datetime, end: datetime) -> list[Movement]:
        r = self.rules
        return self._bounded(
            _MOVES_SQL,
            {
                "start": start,
                "end": end,
                "zone": self.settings.business_timezone,
                "ctr_threshold": r.ctr_threshold,
                "in_out_min": r.in_out_amount_min,
                "structuring_min": r.structuring_amount_min,
                "structuring_max": r.structuring_amount_max,
            },
        )

    def decisions(self, start: datetime, end: datetime) -> list[Movement]:
        return self._bounded(
            _DECISIONS_SQL,
            {
                "kinds": list(DECISION_KINDS),
                "start": start,
                "end": end,
                "threshold": float(self.rules.high_risk_score),
            },
        )

    def reports(
        self, start: datetime, end: datetime, *, closed_before: datetime | None = None
    ) -> list[Report]:
        """Every report that occurred in [start, end), from the history it depends on."""
        moves = self.movements(start - self.rules.context, end)
        return detect(
            moves, self.decisions(start, end), self.rules, start, end, closed_before=closed_before
        )

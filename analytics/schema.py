"""The ClickHouse tables and materialized roll-ups (docs/analytics.md documents them).

``pipeline_events`` holds every event, one row per event_id. The roll-ups are fed by
materialized views on it, so they see every inserted row: the sink inserts an event_id at
most once (it drops ids already stored), which keeps their sums free of replays, and the
ReplacingMergeTree of the raw table is the second line.

Applying the schema is idempotent. A roll-up whose view is missing is (re)built from the raw
table before its view is created; the sink is not running then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

EVENTS_DDL = """CREATE TABLE IF NOT EXISTS pipeline_events (
    event_id UUID,
    event_kind LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    transaction_id UUID,
    transaction_type LowCardinality(String),
    transaction_status LowCardinality(String),
    source_wallet_id Nullable(UUID),
    destination_wallet_id Nullable(UUID),
    source_user_id Nullable(UUID),
    destination_user_id Nullable(UUID),
    amount Decimal(19, 4),
    fee_amount Decimal(19, 4),
    total_amount Decimal(19, 4),
    currency_code LowCardinality(String),
    reason_code LowCardinality(String),
    risk_score Nullable(Float32),
    requested_at DateTime64(3, 'UTC'),
    channel LowCardinality(String),
    terminal_id String,
    client_id UUID,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (event_kind, event_time, event_id)"""

#: Columns added after the first release: ALTER ... IF NOT EXISTS upgrades older tables.
#: ``decision`` follows the event kind, so a "review" kind from the stream lands by itself.
EVENTS_UPGRADES = (
    """ALTER TABLE pipeline_events ADD COLUMN IF NOT EXISTS decision LowCardinality(String)
       DEFAULT multiIf(event_kind = 'approved', 'approve', event_kind = 'rejected', 'decline',
                       event_kind IN ('review', 'held_for_review'), 'review', '')""",
    """ALTER TABLE pipeline_events ADD INDEX IF NOT EXISTS idx_transaction_id transaction_id
       TYPE bloom_filter(0.01) GRANULARITY 4""",
    """ALTER TABLE pipeline_events ADD INDEX IF NOT EXISTS idx_event_id event_id
       TYPE bloom_filter(0.01) GRANULARITY 4""",
)

REPORTS_DDL = """CREATE TABLE IF NOT EXISTS regulatory_reports (
    report_id UUID,
    report_type LowCardinality(String),
    category LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    subject_user_id Nullable(UUID),
    subject_wallet_id Nullable(UUID),
    currency_code LowCardinality(String),
    total_amount Decimal(38, 4),
    transaction_count UInt32,
    record String,
    emitted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(emitted_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (report_type, occurred_at, report_id)"""

#: Risk scores travel as 0-100 with two decimals; the whole points, from the hundredths
#: rounded first (a Float32 87.53 is 87.5299987…), clamped to [0, 100].
SCORE_PERCENT = (
    "intDiv(toUInt32(least(greatest(round(toFloat64(assumeNotNull(risk_score)) * 100), 0),"
    " 10000)), 100)"
)


@dataclass(frozen=True)
class RollUp:
    name: str
    table: str
    select: str  # over {source}: the raw table for the view, its FINAL for a rebuild

    def view_ddl(self) -> str:
        return (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.name}_mv TO {self.name} AS "
            + self.select.format(source="pipeline_events")
        )

    def rebuild_sql(self) -> str:
        return f"INSERT INTO {self.name} " + self.select.format(source="pipeline_events FINAL")


_SHAPES = (
    RollUp(
        "events_by_@grain@",
        """CREATE TABLE IF NOT EXISTS events_by_@grain@ (
            @grain@ DateTime('UTC'),
            event_kind LowCardinality(String),
            decision LowCardinality(String),
            transaction_type LowCardinality(String),
            currency_code LowCardinality(String),
            transaction_status LowCardinality(String),
            events UInt64,
            amount Decimal(38, 4),
            fee_amount Decimal(38, 4)
        ) ENGINE = SummingMergeTree((events, amount, fee_amount))
        PARTITION BY toYYYYMM(@grain@)
        ORDER BY (@grain@, event_kind, decision, transaction_type, currency_code,
                  transaction_status)""",
        """SELECT @floor@(event_time) AS @grain@, event_kind, decision, transaction_type,
                  currency_code, transaction_status, count() AS events, sum(amount) AS amount,
                  sum(fee_amount) AS fee_amount
             FROM {source}
            GROUP BY @grain@, event_kind, decision, transaction_type, currency_code,
                     transaction_status""",
    ),
    RollUp(
        "decline_reasons_by_@grain@",
        """CREATE TABLE IF NOT EXISTS decline_reasons_by_@grain@ (
            @grain@ DateTime('UTC'),
            reason_code LowCardinality(String),
            event_kind LowCardinality(String),
            transaction_type LowCardinality(String),
            currency_code LowCardinality(String),
            events UInt64,
            amount Decimal(38, 4)
        ) ENGINE = SummingMergeTree((events, amount))
        PARTITION BY toYYYYMM(@grain@)
        ORDER BY (@grain@, reason_code, event_kind, transaction_type, currency_code)""",
        """SELECT @floor@(event_time) AS @grain@, reason_code, event_kind,
                  transaction_type, currency_code, count() AS events, sum(amount) AS amount
             FROM {source}
            WHERE reason_code != ''
            GROUP BY @grain@, reason_code, event_kind, transaction_type, currency_code""",
    ),
    RollUp(
        "risk_scores_by_@grain@",
        """CREATE TABLE IF NOT EXISTS risk_scores_by_@grain@ (
            @grain@ DateTime('UTC'),
            decision LowCardinality(String),
            score_percent UInt8,
            events UInt64
        ) ENGINE = SummingMergeTree(events)
        PARTITION BY toYYYYMM(@grain@)
        ORDER BY (@grain@, decision, score_percent)""",
        f"""SELECT @floor@(event_time) AS @grain@, decision,
                  {SCORE_PERCENT} AS score_percent, count() AS events
             FROM {{source}}
            WHERE decision != '' AND risk_score IS NOT NULL
            GROUP BY @grain@, decision, score_percent""",
    ),
    RollUp(
        "latency_by_@grain@",
        """CREATE TABLE IF NOT EXISTS latency_by_@grain@ (
            @grain@ DateTime('UTC'),
            transaction_type LowCardinality(String),
            completed SimpleAggregateFunction(sum, UInt64),
            latency_ms_sum SimpleAggregateFunction(sum, Int64),
            latency_ms_max SimpleAggregateFunction(max, Int64),
            latency_ms_quantiles AggregateFunction(quantilesTiming(0.5, 0.9, 0.99), Int64)
        ) ENGINE = AggregatingMergeTree
        PARTITION BY toYYYYMM(@grain@)
        ORDER BY (@grain@, transaction_type)""",
        """SELECT @floor@(event_time) AS @grain@, transaction_type,
                  toUInt64(count()) AS completed,
                  sum(dateDiff('millisecond', requested_at, event_time)) AS latency_ms_sum,
                  max(dateDiff('millisecond', requested_at, event_time)) AS latency_ms_max,
                  quantilesTimingState(0.5, 0.9, 0.99)(
                      dateDiff('millisecond', requested_at, event_time)) AS latency_ms_quantiles
             FROM {source}
            WHERE event_kind = 'posted'
            GROUP BY @grain@, transaction_type""",
    ),
)


#: (time column, flooring function): minutes for short ranges, hours for long ones.
GRAINS = (("minute", "toStartOfMinute"), ("hour", "toStartOfHour"))

ROLL_UPS = tuple(
    RollUp(
        shape.name.replace("@grain@", grain),
        shape.table.replace("@grain@", grain),
        shape.select.replace("@grain@", grain).replace("@floor@", floor),
    )
    for grain, floor in GRAINS
    for shape in _SHAPES
)


class Executor(Protocol):
    def command(self, sql: str) -> None: ...

    def query(self, sql: str, parameters: dict | None = None) -> list[tuple]: ...


def apply(db: Executor) -> list[str]:
    """Create or upgrade everything; return the roll-ups that were rebuilt."""
    db.command(EVENTS_DDL)
    for statement in EVENTS_UPGRADES:
        db.command(statement)
    db.command(REPORTS_DDL)
    rebuilt = []
    for roll_up in ROLL_UPS:
        db.command(roll_up.table)
        if not db.query(f"EXISTS TABLE {roll_up.name}_mv")[0][0]:
            # No view: whatever the table holds may be partial. Refill it from the raw events.
            db.command(f"TRUNCATE TABLE {roll_up.name}")
            db.command(roll_up.rebuild_sql())
            db.command(roll_up.view_ddl())
            rebuilt.append(roll_up.name)
    return rebuilt

"""The ClickHouse tables and materialized roll-ups (docs/analytics.md documents them).

``pipeline_events`` holds every event, one row per event_id. The roll-ups are fed by
materialized views on it, so they see every inserted row: the sink inserts an event_id at
most once (it drops ids already stored), which keeps their sums free of replays, and the
ReplacingMergeTree of the raw table is the second line.

Applying the schema is idempotent. A roll-up whose view is missing is (re)built from its
source before its view is created; the sink is not running then. The hourly roll-ups are fed
by their minute twins (a cascade of views), not by the raw table.
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
    # Which model decided (ScoredFacts.scored_by, "<model> v<N>"; '' when the record does not
    # say), and the challengers' scores of the same features, 0-100 like risk_score.
    """ALTER TABLE pipeline_events ADD COLUMN IF NOT EXISTS scored_by LowCardinality(String)
       DEFAULT ''""",
    """ALTER TABLE pipeline_events ADD COLUMN IF NOT EXISTS
       shadow_scores Map(LowCardinality(String), Float32)""",
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
    select: str  # over {source}
    #: The table the view reads: ``pipeline_events`` for the minute roll-ups; an hourly
    #: roll-up reads its minute twin, so its view sees the few rows the minute view wrote
    #: for an insert, not every event again (half the views' cost per inserted row).
    source: str = "pipeline_events"
    #: The view's name. Hourly views were once fed by ``pipeline_events`` under
    #: ``<table>_mv``; the cascaded ones have a name of their own, so ``apply`` can tell an
    #: old view (dropped) from the current one.
    view: str = ""

    @property
    def view_name(self) -> str:
        return self.view or f"{self.name}_mv"

    def view_ddl(self) -> str:
        return (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.view_name} TO {self.name} AS "
            + self.select.format(source=self.source)
        )

    def rebuild_sql(self) -> str:
        # FINAL: replays may not have merged away in the raw table yet. The minute roll-ups
        # hold partial sums that any further sum reads right.
        source = f"{self.source} FINAL" if self.source == "pipeline_events" else self.source
        return f"INSERT INTO {self.name} " + self.select.format(source=source)


_KEYS = "event_kind, decision, transaction_type, currency_code, transaction_status"
_TABLES = {
    "events": """CREATE TABLE IF NOT EXISTS events_by_@grain@ (
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
    "decline_reasons": """CREATE TABLE IF NOT EXISTS decline_reasons_by_@grain@ (
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
    "risk_scores": """CREATE TABLE IF NOT EXISTS risk_scores_by_@grain@ (
            @grain@ DateTime('UTC'),
            decision LowCardinality(String),
            score_percent UInt8,
            events UInt64
        ) ENGINE = SummingMergeTree(events)
        PARTITION BY toYYYYMM(@grain@)
        ORDER BY (@grain@, decision, score_percent)""",
    "latency": """CREATE TABLE IF NOT EXISTS latency_by_@grain@ (
            @grain@ DateTime('UTC'),
            transaction_type LowCardinality(String),
            completed SimpleAggregateFunction(sum, UInt64),
            latency_ms_sum SimpleAggregateFunction(sum, Int64),
            latency_ms_max SimpleAggregateFunction(max, Int64),
            latency_ms_quantiles AggregateFunction(quantilesTiming(0.5, 0.9, 0.99), Int64)
        ) ENGINE = AggregatingMergeTree
        PARTITION BY toYYYYMM(@grain@)
        ORDER BY (@grain@, transaction_type)""",
    "model_scores": """CREATE TABLE IF NOT EXISTS model_scores_by_@grain@ (
            @grain@ DateTime('UTC'),
            model LowCardinality(String),
            role LowCardinality(String),
            decision LowCardinality(String),
            score_percent UInt8,
            events UInt64,
            score_sum Float64,
            diff_sum Float64,
            diff_abs_sum Float64
        ) ENGINE = SummingMergeTree((events, score_sum, diff_sum, diff_abs_sum))
        PARTITION BY toYYYYMM(@grain@)
        ORDER BY (@grain@, model, role, decision, score_percent)""",
}
#: A decision's scores, one per model: the champion's (``scored_by``, ``risk_score``) and each
#: challenger's (``shadow_scores``), as (model, role, score) beside the champion's score.
_MODEL_SCORE = """arrayConcat(
                [(toString(scored_by), 'champion', toFloat64(assumeNotNull(risk_score)))],
                arrayMap((name, value) -> (toString(name), 'challenger', toFloat64(value)),
                         mapKeys(shadow_scores), mapValues(shadow_scores)))"""
#: Each roll-up by minute, from the raw events.
_BY_MINUTE = {
    "events": f"""SELECT toStartOfMinute(event_time) AS minute, {_KEYS}, count() AS events,
                  sum(amount) AS amount, sum(fee_amount) AS fee_amount
             FROM {{source}}
            GROUP BY minute, {_KEYS}""",
    "decline_reasons": """SELECT toStartOfMinute(event_time) AS minute, reason_code, event_kind,
                  transaction_type, currency_code, count() AS events, sum(amount) AS amount
             FROM {source}
            WHERE reason_code != ''
            GROUP BY minute, reason_code, event_kind, transaction_type, currency_code""",
    "risk_scores": f"""SELECT toStartOfMinute(event_time) AS minute, decision,
                  {SCORE_PERCENT} AS score_percent, count() AS events
             FROM {{source}}
            WHERE decision != '' AND risk_score IS NOT NULL
            GROUP BY minute, decision, score_percent""",
    "latency": """SELECT toStartOfMinute(event_time) AS minute, transaction_type,
                  toUInt64(count()) AS completed,
                  sum(dateDiff('millisecond', requested_at, event_time)) AS latency_ms_sum,
                  max(dateDiff('millisecond', requested_at, event_time)) AS latency_ms_max,
                  quantilesTimingState(0.5, 0.9, 0.99)(
                      dateDiff('millisecond', requested_at, event_time)) AS latency_ms_quantiles
             FROM {source}
            WHERE event_kind = 'posted'
            GROUP BY minute, transaction_type""",
    "model_scores": f"""SELECT toStartOfMinute(event_time) AS minute, score.1 AS model,
                  score.2 AS role, decision,
                  intDiv(toUInt32(least(greatest(round(score.3 * 100), 0), 10000)), 100)
                      AS score_percent,
                  count() AS events, sum(score.3) AS score_sum,
                  sum(score.3 - toFloat64(assumeNotNull(risk_score))) AS diff_sum,
                  sum(abs(score.3 - toFloat64(assumeNotNull(risk_score)))) AS diff_abs_sum
             FROM (SELECT event_time, decision, scored_by, risk_score, shadow_scores
                     FROM {{source}}
                    WHERE decision != '' AND scored_by != '' AND risk_score IS NOT NULL)
            ARRAY JOIN {_MODEL_SCORE} AS score
            GROUP BY minute, model, role, decision, score_percent""",
}
#: Each roll-up by hour, from its minute twin (partial sums and states merge exactly).
_BY_HOUR = {
    "events": f"""SELECT toStartOfHour(minute) AS hour, {_KEYS}, sum(events) AS events,
                  sum(amount) AS amount, sum(fee_amount) AS fee_amount
             FROM {{source}}
            GROUP BY hour, {_KEYS}""",
    "decline_reasons": """SELECT toStartOfHour(minute) AS hour, reason_code, event_kind,
                  transaction_type, currency_code, sum(events) AS events, sum(amount) AS amount
             FROM {source}
            GROUP BY hour, reason_code, event_kind, transaction_type, currency_code""",
    "risk_scores": """SELECT toStartOfHour(minute) AS hour, decision, score_percent,
                  sum(events) AS events
             FROM {source}
            GROUP BY hour, decision, score_percent""",
    "latency": """SELECT toStartOfHour(minute) AS hour, transaction_type,
                  sum(completed) AS completed, sum(latency_ms_sum) AS latency_ms_sum,
                  max(latency_ms_max) AS latency_ms_max,
                  quantilesTimingMergeState(0.5, 0.9, 0.99)(latency_ms_quantiles)
                      AS latency_ms_quantiles
             FROM {source}
            GROUP BY hour, transaction_type""",
    "model_scores": """SELECT toStartOfHour(minute) AS hour, model, role, decision, score_percent,
                  sum(events) AS events, sum(score_sum) AS score_sum, sum(diff_sum) AS diff_sum,
                  sum(diff_abs_sum) AS diff_abs_sum
             FROM {source}
            GROUP BY hour, model, role, decision, score_percent""",
}

#: The grains, minute first: an hourly roll-up is rebuilt from its minute twin.
GRAINS = ("minute", "hour")

#: Minute views whose query changed since an earlier release, by the name of the current
#: one: an engine made by that release has the old view (``<table>_mv``), which ``apply``
#: drops (``RETIRED_VIEWS``), then rebuilds the roll-up and creates the current view.
#: ``model_scores``: the scores' arrays are built for decisions only (a WHERE after the
#: ARRAY JOIN built them for every event first; about 1 µs an inserted row).
_REVISED_MINUTE_VIEWS = {"model_scores": "model_scores_by_minute_decisions_mv"}

ROLL_UPS = tuple(
    RollUp(
        f"{shape}_by_minute",
        _TABLES[shape].replace("@grain@", "minute"),
        _BY_MINUTE[shape],
        view=_REVISED_MINUTE_VIEWS.get(shape, ""),
    )
    for shape in _TABLES
) + tuple(
    RollUp(
        f"{shape}_by_hour",
        _TABLES[shape].replace("@grain@", "hour"),
        _BY_HOUR[shape],
        source=f"{shape}_by_minute",
        view=f"{shape}_by_hour_from_minute_mv",
    )
    for shape in _TABLES
)
#: Views of earlier releases, replaced by the above: hourly ones that read
#: ``pipeline_events`` directly, and the first forms of the revised minute views.
RETIRED_VIEWS = tuple(
    f"{shape}_by_hour_mv" for shape in ("events", "decline_reasons", "risk_scores", "latency")
) + tuple(f"{shape}_by_minute_mv" for shape in _REVISED_MINUTE_VIEWS)


class Executor(Protocol):
    def command(self, sql: str) -> None: ...

    def query(self, sql: str, parameters: dict | None = None) -> list[tuple]: ...


def apply(db: Executor) -> list[str]:
    """Create or upgrade everything; return the roll-ups that were rebuilt."""
    db.command(EVENTS_DDL)
    for statement in EVENTS_UPGRADES:
        db.command(statement)
    db.command(REPORTS_DDL)
    for view in RETIRED_VIEWS:
        db.command(f"DROP VIEW IF EXISTS {view}")
    rebuilt = []
    for roll_up in ROLL_UPS:
        db.command(roll_up.table)
        if not db.query(f"EXISTS TABLE {roll_up.view_name}")[0][0]:
            # No view: whatever the table holds may be partial. Refill it from its source
            # (the raw events, or the minute twin rebuilt just before). A roll-up fed by this
            # one would see the refill as new rows: its view goes too, and it is rebuilt next.
            for fed in ROLL_UPS:
                if fed.source == roll_up.name:
                    db.command(f"DROP VIEW IF EXISTS {fed.view_name}")
            db.command(f"TRUNCATE TABLE {roll_up.name}")
            db.command(roll_up.rebuild_sql())
            db.command(roll_up.view_ddl())
            rebuilt.append(roll_up.name)
    return rebuilt

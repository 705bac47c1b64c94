"""analytics.schema on the embedded engine: a table and views made by an earlier release are
upgraded in place (a process of its own engine path: chDB opens one path per process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics import schema
from analytics.clickhouse import Warehouse, events_batch
from analytics.sink import store_new_events
from tests.integration.test_analytics_warehouse import as_row, event

pytestmark = pytest.mark.integration


def test_an_older_table_gains_the_model_columns_and_the_hourly_views_are_replaced(
    tmp_path: Path,
) -> None:
    """A table and views made by an earlier release: applying the schema adds scored_by and
    shadow_scores (old rows read '' and {}), replaces each hourly view fed by the raw table
    with one fed by its minute twin, and rebuilds nothing that did not need it; every total
    stays the same, and a new event is counted once in both grains."""
    old = Warehouse(f"chdb://{tmp_path / 'engine'}")
    old.insert_events(events_batch([as_row(event(n)) for n in range(3)]).table)
    for shape in ("events", "decline_reasons", "risk_scores", "latency"):
        old.command(f"DROP VIEW {shape}_by_hour_from_minute_mv")
        retired = next(r for r in schema.ROLL_UPS if r.name == f"{shape}_by_hour")
        minute = next(r for r in schema.ROLL_UPS if r.name == f"{shape}_by_minute")
        old.command(  # the earlier hourly view: the minute select over the raw events, by hour
            f"CREATE MATERIALIZED VIEW {shape}_by_hour_mv TO {shape}_by_hour AS "
            + minute.select.format(source="pipeline_events")
            .replace("toStartOfMinute", "toStartOfHour")
            .replace("AS minute", "AS hour")
            .replace("BY minute", "BY hour")
        )
        assert retired.view_name != f"{shape}_by_hour_mv"
    old.command("DROP VIEW model_scores_by_hour_from_minute_mv")  # not in that release
    old.command("DROP VIEW model_scores_by_minute_decisions_mv")
    old.command("DROP TABLE model_scores_by_hour")
    old.command("DROP TABLE model_scores_by_minute")
    old.command("ALTER TABLE pipeline_events DROP COLUMN shadow_scores")
    old.command("ALTER TABLE pipeline_events DROP COLUMN scored_by")
    old.close()

    upgraded = Warehouse(f"chdb://{tmp_path / 'engine'}")
    try:
        assert sorted(upgraded.rebuilt_roll_ups) == sorted(
            [f"{s}_by_hour" for s in ("events", "decline_reasons", "risk_scores", "latency")]
            + ["model_scores_by_minute", "model_scores_by_hour"]  # new: built from the events
        )
        views = {row[0] for row in upgraded.query("SELECT name FROM system.tables")}
        assert not {f"{s}_by_hour_mv" for s in ("events", "latency")} & views
        assert upgraded.query("SELECT DISTINCT scored_by, shadow_scores FROM pipeline_events") == [
            ("", {})
        ]
        new = as_row(event(9, scored_by="fraud-gbm v3", shadow_scores={"fraud-gbm v4": 1.0}))
        assert store_new_events(upgraded, events_batch([new]).table) == 1
        counts = upgraded.query(
            "SELECT (SELECT sum(events) FROM events_by_minute),"
            " (SELECT sum(events) FROM events_by_hour),"
            " (SELECT sum(completed) FROM latency_by_hour)"
        )
        assert counts == [(4, 4, 4)]
    finally:
        upgraded.close()


#: The model-scores minute view as the release before its revision made it: the scores'
#: arrays built for every event, decisions kept after the ARRAY JOIN.
FIRST_MODEL_SCORES_VIEW = """CREATE MATERIALIZED VIEW model_scores_by_minute_mv
    TO model_scores_by_minute AS
    SELECT toStartOfMinute(event_time) AS minute, score.1 AS model, score.2 AS role, decision,
           intDiv(toUInt32(least(greatest(round(score.3 * 100), 0), 10000)), 100)
               AS score_percent,
           count() AS events, sum(score.3) AS score_sum,
           sum(score.3 - toFloat64(assumeNotNull(risk_score))) AS diff_sum,
           sum(abs(score.3 - toFloat64(assumeNotNull(risk_score)))) AS diff_abs_sum
      FROM pipeline_events
     ARRAY JOIN arrayConcat(
           [(toString(scored_by), 'champion', toFloat64(assumeNotNull(risk_score)))],
           arrayMap((name, value) -> (toString(name), 'challenger', toFloat64(value)),
                    mapKeys(shadow_scores), mapValues(shadow_scores))) AS score
     WHERE decision != '' AND scored_by != '' AND risk_score IS NOT NULL
     GROUP BY minute, model, role, decision, score_percent"""


def test_a_revised_minute_view_replaces_its_first_form_and_the_totals_stay(
    tmp_path: Path,
) -> None:
    """An engine whose model-scores view is the first form: applying the schema drops it,
    rebuilds the minute and hour roll-ups from the events, and creates the revised view; the
    totals are the same, and a new decision is counted once in both grains."""
    decision = {"event_kind": "approved", "scored_by": "fraud-gbm v3"}
    old = Warehouse(f"chdb://{tmp_path / 'engine'}")
    old.command("DROP VIEW model_scores_by_minute_decisions_mv")
    old.command(FIRST_MODEL_SCORES_VIEW)
    rows = [as_row(event(n, **decision, shadow_scores={"fraud-gbm v4": 40.0})) for n in range(4)]
    rows.append(as_row(event(4)))  # a posting: no decision, not a model score
    assert store_new_events(old, events_batch(rows).table) == 5
    totals = """SELECT (SELECT sum(events) FROM model_scores_by_minute),
                       (SELECT sum(score_sum) FROM model_scores_by_minute),
                       (SELECT sum(events) FROM model_scores_by_hour),
                       (SELECT sum(score_sum) FROM model_scores_by_hour)"""
    before = old.query(totals)
    assert before[0][0] == before[0][2] == 8  # four decisions: the champion's and a challenger's
    old.close()

    upgraded = Warehouse(f"chdb://{tmp_path / 'engine'}")
    try:
        assert sorted(upgraded.rebuilt_roll_ups) == [
            "model_scores_by_hour",
            "model_scores_by_minute",
        ]
        views = {row[0] for row in upgraded.query("SELECT name FROM system.tables")}
        assert "model_scores_by_minute_mv" not in views
        assert "model_scores_by_minute_decisions_mv" in views
        assert upgraded.query(totals) == before
        new = as_row(event(9, **decision, shadow_scores={"fraud-gbm v4": 1.0}))
        assert store_new_events(upgraded, events_batch([new]).table) == 1
        [(minute, _, hour, _)] = upgraded.query(totals)
        assert minute == hour == 10
    finally:
        upgraded.close()

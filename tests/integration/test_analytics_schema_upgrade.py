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
    old.command("DROP VIEW model_scores_by_minute_mv")
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

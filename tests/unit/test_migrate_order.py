"""Ordering and validation of migration files: pure, no database."""

from __future__ import annotations

import pytest

from infra.exceptions import MigrationError
from infra.migrate import Migration, hash_api_key, pending, plan


def test_plan_orders_by_number_not_by_text() -> None:
    names = ["0010_ten.sql", "0002_two.sql", "0001_one.sql", "0100_hundred.sql"]
    assert [m.version for m in plan(names)] == [1, 2, 10, 100]
    assert plan(names)[0] == Migration(1, "0001_one.sql")


def test_plan_ignores_files_that_are_not_sql() -> None:
    assert plan(["README.md", "0001_one.sql", "0002_two.sql~", ".keep"]) == [
        Migration(1, "0001_one.sql")
    ]


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "seed.sql", "0001_.sql"])
def test_plan_rejects_misnamed_sql_files(name: str) -> None:
    with pytest.raises(MigrationError, match=name):
        plan([name])


def test_plan_rejects_two_files_with_one_version() -> None:
    with pytest.raises(MigrationError, match="share version 3"):
        plan(["0003_a.sql", "0003_b.sql"])


def test_pending_keeps_order_and_runs_late_lower_numbers() -> None:
    migrations = plan(["0001_a.sql", "0002_b.sql", "0003_c.sql", "0004_d.sql"])
    assert [m.version for m in pending(migrations, {1, 3})] == [2, 4]
    assert pending(migrations, {1, 2, 3, 4}) == []


def test_api_key_hash_is_sha256_hex() -> None:
    digest = hash_api_key("wp_demo_x")
    assert len(digest) == 64
    assert digest == hash_api_key("wp_demo_x") != hash_api_key("wp_demo_y")

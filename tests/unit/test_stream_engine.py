"""streams.engine: the quix-streams application is configured for exactly once, with a
transactional id and a static group membership stable per worker, a bounded failure path,
and the worker's settings bounded."""

from __future__ import annotations

import threading
from pathlib import Path

from streams.engine import build_application, transactional_id, worker_identity
from streams.settings import StreamSettings


def settings(tmp_path: Path, **changes: object) -> StreamSettings:
    return StreamSettings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path / "a", **changes)


def test_the_worker_runs_exactly_once_with_a_short_commit_interval(tmp_path: Path) -> None:
    app = build_application(settings(tmp_path))
    assert app.config.exactly_once
    assert app.config.commit_interval == 0.05
    assert app.config.consumer_group == "wallet-streams"
    producer = app.config.producer_extra_config
    assert producer["transactional.id"] == transactional_id(settings(tmp_path))
    assert producer["partitioner"] == "murmur2_random"
    assert app.config.consumer_extra_config["session.timeout.ms"] == 10_000
    # A restarted worker takes its partitions back as the same member, and fences the
    # transaction its predecessor left open, with one identity.
    assert app.config.consumer_extra_config["group.instance.id"] == worker_identity(
        settings(tmp_path)
    )
    assert producer["transactional.id"] == worker_identity(settings(tmp_path))


def test_the_transactional_id_is_stable_per_state_folder(tmp_path: Path) -> None:
    one, again = settings(tmp_path), settings(tmp_path)
    other = StreamSettings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path / "b")
    assert transactional_id(one) == transactional_id(again) != transactional_id(other)
    assert transactional_id(one).startswith("wallet-streams-")


def test_at_least_once_has_no_transactions(tmp_path: Path) -> None:
    app = build_application(settings(tmp_path, processing_guarantee="at-least-once"))
    assert not app.config.exactly_once
    assert "transactional.id" not in app.config.producer_extra_config


def test_a_failed_run_gives_its_clean_up_a_bounded_time(tmp_path: Path) -> None:
    gave_up = threading.Event()
    app = build_application(settings(tmp_path, failure_exit_timeout_ms=500), give_up=gave_up.set)
    app.stop(fail=False)  # a graceful stop has all the time it needs
    assert app.give_up_timer is None
    app.stop(fail=True)
    assert gave_up.wait(5)

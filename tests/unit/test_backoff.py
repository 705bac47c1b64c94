"""domain.backoff: delays double up to a bound, jitter only shortens, crash windows forget."""

from __future__ import annotations

import random

import pytest

from domain.backoff import Backoff, CrashWindow


def test_delays_double_up_to_the_bound_and_reset_starts_over() -> None:
    backoff = Backoff(initial_s=0.5, delay_max_s=4.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_jitter_takes_off_at_most_its_share() -> None:
    backoff = Backoff(initial_s=1.0, delay_max_s=1.0, jitter=0.25, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.75 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 100  # processes that failed together do not retry in step


def test_many_attempts_stay_bounded() -> None:
    backoff = Backoff(initial_s=0.1, delay_max_s=30.0, jitter=0.0)
    for _ in range(10_000):
        assert backoff.next_delay() <= 30.0


@pytest.mark.parametrize(
    "kwargs", [{"initial_s": 0}, {"initial_s": 5, "delay_max_s": 1}, {"factor": 0.5}, {"jitter": 1}]
)
def test_nonsense_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_a_crash_loop_is_so_many_exits_inside_the_window() -> None:
    window = CrashWindow(exits_max=3, window_s=60.0)
    for at in (0.0, 10.0):
        window.record(at)
    assert not window.looping(20.0)
    window.record(30.0)
    assert window.looping(30.0)
    assert not window.looping(61.0)  # the first exit left the window
    assert window.count(200.0) == 0


def test_the_window_keeps_a_bounded_number_of_exits() -> None:
    window = CrashWindow(exits_max=5, window_s=1e9)
    for at in range(10_000):
        window.record(float(at))
    assert len(window.exits) == 5
    assert window.looping(10_000.0)

"""bench/chaos: the fault schedule and the recovery measurement (pure parts)."""

from __future__ import annotations

from collections import Counter

from bench.chaos.faults import recovered_at
from bench.chaos.run import ALL_SERVICES, ChaosConfig, schedule


def test_schedule_kills_round_robin_and_spreads_the_restarts() -> None:
    faults = schedule(ChaosConfig(kills=20, kafka_restarts=2, postgres_restarts=2, seed=3))
    kills = Counter(f.target for f in faults if f.kind == "kill")
    # Round robin: 20 kills over the six services, each killed 3 or 4 times.
    assert sum(kills.values()) == 20 and set(kills) == set(ALL_SERVICES)
    assert set(kills.values()) == {20 // len(ALL_SERVICES), 20 // len(ALL_SERVICES) + 1}
    restarts = Counter(f.target for f in faults if f.kind == "restart")
    assert restarts == {"kafka": 2, "postgres": 2}
    assert schedule(ChaosConfig(seed=3)) == schedule(ChaosConfig(seed=3))  # seeded


def test_recovery_is_the_first_window_at_the_rate() -> None:
    # A trickle (one a second) from t = 11, then five a second from t = 14.
    trickle = [11.0, 12.0, 13.0]
    steady = [14.0 + i * 0.2 for i in range(10)]
    assert recovered_at(trickle + steady, rate_min=5) == 14.8
    assert recovered_at(trickle, rate_min=3) is None
    assert recovered_at(trickle, rate_min=1) == 11.0
    assert recovered_at([], rate_min=1) is None

"""bench/chaos in its short form: a few services SIGKILLed, Kafka and PostgreSQL restarted
once each, under simulated traffic, on a stack of its own (Kafka and PostgreSQL restart, so
never the shared test stack). Fails when any accepted request is stuck or has more than one
outcome, the ledger does not verify, or the API acknowledged a request it did not record.

Every service is killed once, the stream worker included (exactly once: a worker killed
mid-transaction leaves nothing half done, its successor fences it and resumes from the
committed offsets and state), and the Kafka restart makes the stream worker fail its open
transaction and be restarted too; the full bench (``python -m bench.chaos.run``) kills more.
The traffic is light (3 requests a second) so that a loaded CI machine does not build a
backlog that would age requests past the reconciliation deadline while nothing is wrong;
no recovery time is asserted (bench/chaos measures those).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos.run import ChaosConfig, run_chaos
from bench.chaos.traffic import TrafficConfig
from infra.settings import StackSettings

pytestmark = pytest.mark.e2e
SHORT = ChaosConfig(
    kills=5,
    kafka_restarts=1,
    postgres_restarts=1,
    services=("ingest", "streams", "ledger", "gateway", "analytics"),
    traffic=TrafficConfig(tps=3, users=10, merchants=2, seed=11),
    seed=11,
    warmup_s=3.0,
    gap_s=(0.5, 1.0),
    down_s=1.0,
    recovery_cap_s=60.0,
    tail_s=2.0,
)


def test_nothing_accepted_is_lost_or_doubled_through_kills_and_restarts(
    start_stack, stack_dir: Path
) -> None:
    local_dir = Path(f"{stack_dir}-chaos")
    settings = StackSettings(
        kafka_libs_dir=stack_dir / "kafka" / "libs",
        pg_shared_buffers_mb=64,
        kafka_heap_max_mb=512,
        kafka_start_timeout_s=180,
    )
    start_stack(local_dir, settings)
    result = run_chaos(local_dir, settings, SHORT)

    assert result["stuck"] == 0 and result["duplicated"] == 0, result
    assert result["verify_ok"] and result["client_accepted_missing"] == 0, result
    assert result["kills"] == 5 and result["restarts"] == 2
    assert result["accepted"] > 0 and result["ended"] == result["accepted"], result
    faults = result["faults"]
    assert all(f["back_s"] is not None for f in faults), faults  # the supervisor restarted
    assert set(result["services_running_after"]) >= set(SHORT.services), result

"""The live detection report of ``walletpipe simulate`` and ``demo``: the stream's first
decision and score on each simulated request, read back from ClickHouse (through the
analytics API when the service runs, else the engine, as ``models backtest`` reads it),
joined with what the simulator sent (scenario, amount) and the labels.

A request the stream refused for another reason than fraud (funds, limits) is not a fraud
decline: it counts as passed by the fraud check. The labels are ClickHouse's when it
stores them, else the simulator's own (it sent them, so they are the same).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from models.live_report import DECLINE, LiveOutcome, live_report
from walletpipe.simulate import SentLog

#: The analytics sink flushes about once a second; wait for the last decisions to land.
SINK_WAIT_S = 3.0
FRAUD_DECLINED = "FRAUD_DECLINED"


def champion_offline_ap(models_dir: str | None, name: str = "fraud") -> float | None:
    from models.exceptions import ArtifactError
    from models.registry import Registry

    if not models_dir:
        return None
    registry = Registry(Path(models_dir))
    try:
        version = registry.champion_version(name)
        if version is None:
            return None
        metrics = registry.load(name, version).metadata.get("metrics") or {}
    except (ArtifactError, OSError):
        return None
    value = metrics.get("average_precision")
    return None if value is None else float(value)


def detection_report(
    env: dict[str, str], start: datetime, log: SentLog, api_key: Callable[[], str]
) -> dict[str, Any]:
    from walletpipe.backtest import read_engine, read_through_api, service_running

    time.sleep(SINK_WAIT_S)
    end = datetime.now(start.tzinfo) + timedelta(seconds=1)
    if service_running(env):
        rows, labels = read_through_api(env, api_key(), start, end)
    else:
        rows, labels = read_engine(env, start, end)
    decided = {str(row[0]): (row[8] or "", row[9]) for row in rows}
    stored = {str(k): v for k, v in (labels or {}).items()}
    outcomes = []
    for transaction_id, (scenario, amount) in log.sent.items():
        decision, score = decided.get(transaction_id, ("", None))
        if decision == DECLINE and log.reasons.get(transaction_id) not in (None, FRAUD_DECLINED):
            decision = "refused"  # funds or limits, not the fraud check
        if transaction_id in stored and stored[transaction_id] != (scenario is not None):
            scenario = scenario or "labelled fraud"
        outcomes.append(
            LiveOutcome(scenario, amount, decision, None if score is None else float(score))
        )
    report = live_report(outcomes, champion_offline_ap(env.get("STREAMS_MODELS_DIR")))
    report["decisions_found"] = sum(1 for t in log.sent if t in decided)
    return report


def write_report_json(report: dict[str, Any], path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2, default=str) + "\n")

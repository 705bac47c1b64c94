"""The faults the chaos driver injects, and how long throughput takes to come back.

* **kill**: SIGKILL to a service's process group, found by pid in the supervisor's status
  file (``services.json`` of ``walletpipe run``) and checked by its command line first, so a
  recycled pid is never hit. The supervisor is what brings it back.
* **restart** of Kafka or PostgreSQL: stopped as ``walletpipe down`` stops it, kept down
  ``down_s``, started again as ``walletpipe up`` starts it.

Recovery (``recovered_at`` over ``ended_since``): the moment by which requests accepted after
a moment ``since`` end (their terminal event in the ledger) at ``rate_min`` per second or
more, over a one-second window; times are the servers' (the database's rows), not the
client's. For a kill ``since`` is the kill itself; for a restart it is the moment the
component answers again, since the outage before it is the one asked for.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from infra import kafka, postgres
from infra.processes import pid_matches
from infra.settings import StackSettings
from infra.stack import STATE_FILE

#: What each service's command line contains (its module), to check a pid before a kill.
MARKERS = {
    "ingest": "ingest_api.app",
    "streams": "streams.app",
    "ledger": "ledger_writer.writer",
    "gateway": "ledger_writer.gateway",
    "analytics": "analytics.service",
}
SERVICE_WAIT_S = 60.0


@dataclass
class Fault:
    """One injected fault and what followed (times in seconds since the driver started)."""

    kind: str  # "kill" or "restart"
    target: str
    at_s: float = 0.0
    #: Kill: the supervisor started a new process; restart: the component answers again.
    back_s: float | None = None
    recovered_s: float | None = None

    def row(self) -> str:
        back = "-" if self.back_s is None else f"{self.back_s:6.1f}"
        rec = "NOT RECOVERED" if self.recovered_s is None else f"{self.recovered_s:6.1f}"
        return f"{self.at_s:7.1f}s  {self.kind:<7} {self.target:<10} back {back}  recovered {rec}"


def service_pids(status_path: Path) -> dict[str, int]:
    try:
        body = json.loads(status_path.read_text())
    except (OSError, ValueError):
        return {}
    return {n: s["pid"] for n, s in body.get("services", {}).items() if s.get("pid")}


def kill_service(status_path: Path, name: str) -> int:
    """SIGKILL the service's process group; returns the pid killed."""
    deadline = time.monotonic() + SERVICE_WAIT_S
    while True:  # it may itself be restarting from the previous fault
        pid = service_pids(status_path).get(name)
        if pid is not None and pid_matches(pid, MARKERS.get(name, name)):
            os.killpg(pid, signal.SIGKILL)
            return pid
        if time.monotonic() > deadline:
            raise RuntimeError(f"service {name} has no live process to kill")
        time.sleep(0.2)


def wait_restarted(status_path: Path, name: str, old_pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid = service_pids(status_path).get(name)
        if pid is not None and pid != old_pid and pid_matches(pid, MARKERS.get(name, name)):
            return True
        time.sleep(0.1)
    return False


def restart_component(name: str, local_dir: Path, settings: StackSettings, down_s: float) -> None:
    """Stop Kafka or PostgreSQL, keep it down ``down_s``, start it and wait until ready."""
    state = json.loads((local_dir / STATE_FILE).read_text())  # what `up` chose and keeps
    ports, cluster_id = state["ports"], state["kafka_cluster_id"]
    if name == "kafka":
        kafka.stop(local_dir, settings)
        time.sleep(down_s)
        kafka.start(local_dir, ports["kafka"], ports["kafka_controller"], cluster_id, settings)
        kafka.wait_ready(local_dir, ports["kafka"], settings, cluster_id)
    elif name == "postgres":
        postgres.stop(local_dir, settings)
        time.sleep(down_s)
        postgres.start(local_dir, ports["postgres"], settings)
    else:
        raise ValueError(f"cannot restart {name!r}: kafka or postgres")


_ENDED_SINCE_SQL = """SELECT extract(epoch FROM e.created_at)::float8
                         FROM transaction_requests r
                         JOIN transaction_events e USING (transaction_id)
                        WHERE r.created_at >= to_timestamp(%s)
                          AND e.event_type IN ('SETTLED', 'FAILED')
                        ORDER BY 1"""
_ENDED_BETWEEN_SQL = """SELECT count(*) FROM transaction_events
                         WHERE event_type IN ('SETTLED', 'FAILED')
                           AND created_at >= to_timestamp(%s) AND created_at < to_timestamp(%s)"""


def ended_since(database_url: str, since: float) -> list[float] | None:
    """When each request accepted at or after ``since`` (epoch seconds) ended, by the
    servers' clocks (the API's acceptance, the ledger's terminal event), so a busy client
    reading its answers late does not move the figures; None while PostgreSQL is away."""
    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            return [row[0] for row in conn.execute(_ENDED_SINCE_SQL, (since,)).fetchall()]
    except psycopg.OperationalError:
        return None


def ended_rate(database_url: str, since: float, until: float) -> float:
    """Outcomes per second between two moments (epoch seconds)."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute(_ENDED_BETWEEN_SQL, (since, until)).fetchone()
    return (row[0] if row else 0) / max(until - since, 1e-9)


def recovered_at(ended_at: Sequence[float], rate_min: float, window_s: float = 1.0) -> float | None:
    """The first time by which ``rate_min * window_s`` of the (sorted) outcome times fell
    within ``window_s``; None if that has not happened (yet)."""
    need = max(1, math.ceil(rate_min * window_s))
    for i in range(need - 1, len(ended_at)):
        if ended_at[i] - ended_at[i - need + 1] <= window_s:
            return ended_at[i]
    return None

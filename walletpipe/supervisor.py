"""Run every service as a child process, watch them, and stop them all cleanly.

Each service is its own process (the API under uvicorn, the faust worker, the ledger writer,
the analytics service) so one crash cannot corrupt another's state; if any child dies, all
are stopped and the supervisor reports which one, with the tail of its log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from confluent_kafka.admin import AdminClient

STOP_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 120.0


@dataclass
class Service:
    name: str
    argv: list[str]
    health_url: str | None = None
    consumer_group: str | None = None
    #: Variables of this service alone (a ledger shard's LEDGER_SHARD).
    env: dict[str, str] | None = None


def ledger_services(env: dict[str, str], python: str) -> list[Service]:
    """One writer per ledger shard (LEDGER_DATABASE_URLS), or the one writer."""
    from domain.shards import split_database_urls

    argv = [python, "-m", "ledger_writer.writer"]
    count = len(split_database_urls(env.get("LEDGER_DATABASE_URLS", "")))
    if count <= 1:
        return [Service("ledger", argv, consumer_group="ledger-writer")]
    return [
        Service(
            f"ledger-{i}",
            argv,
            consumer_group=f"ledger-writer-shard-{i}",
            env={"LEDGER_SHARD": str(i)},
        )
        for i in range(count)
    ]


def services(env: dict[str, str], only: set[str] | None = None) -> list[Service]:
    ingest = urlparse(env["INGEST_URL"])
    python = sys.executable
    all_services = [
        Service(
            "ingest",
            [
                python,
                "-m",
                "uvicorn",
                "--factory",
                "ingest_api.app:create_app",
                "--host",
                ingest.hostname or "127.0.0.1",
                "--port",
                str(ingest.port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            health_url=f"{env['INGEST_URL']}/health",
        ),
        Service("streams", [python, "-m", "streams.app"], consumer_group="wallet-streams"),
        *ledger_services(env, python),
        # The simulated payment gateway that answers the ledger's two-phase holds.
        Service(
            "gateway", [python, "-m", "ledger_writer.gateway"], consumer_group="payment-gateway"
        ),
        Service(
            "analytics",
            [python, "-m", "analytics.service"],
            health_url=f"{env['ANALYTICS_URL']}/health",
            consumer_group="analytics-sink",
        ),
    ]
    wanted = set(only) if only is not None else None
    if wanted is not None and "ledger" in wanted:  # `--only ledger` means every shard's
        wanted |= {s.name for s in all_services if s.name.startswith("ledger-")}
    return [s for s in all_services if wanted is None or s.name in wanted]


class Supervisor:
    def __init__(self, env: dict[str, str], log_dir: Path, repo_root: Path) -> None:
        self.env = {
            **os.environ,
            **env,
            "PYTHONUNBUFFERED": "1",
            "STREAMS_DATA_DIR": str(log_dir.parent / "streams"),
        }
        self.log_dir = log_dir
        self.repo_root = repo_root
        self.children: dict[str, subprocess.Popen] = {}

    def start(self, wanted: list[Service]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in wanted:
            log = open(self.log_dir / f"{service.name}.log", "ab")  # noqa: SIM115
            self.children[service.name] = subprocess.Popen(
                service.argv,
                env={**self.env, **(service.env or {})},
                cwd=self.repo_root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, wanted: list[Service], timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        admin = AdminClient({"bootstrap.servers": self.env["KAFKA_BOOTSTRAP"]})
        pending = list(wanted)
        while pending:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout_s:.0f}s: {[s.name for s in pending]}")
            pending = [s for s in pending if not _ready(s, admin)]
            time.sleep(0.5)

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                raise RuntimeError(
                    f"service {name} exited with {child.returncode}; last log "
                    f"lines:\n{self.log_tail(name)}"
                )

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=5)
        self.children.clear()


def _ready(service: Service, admin: AdminClient) -> bool:
    if service.health_url:
        try:
            with urllib.request.urlopen(service.health_url, timeout=2) as answer:
                if answer.status != 200:
                    return False
        except OSError:
            return False
    if service.consumer_group:
        return group_has_members(admin, service.consumer_group)
    return True


def group_has_members(admin: AdminClient, group: str) -> bool:
    """A consumer group is serving once it is stable with at least one assigned member."""
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=5)
    except Exception:  # noqa: BLE001 - not yet known to the coordinator
        return False
    stable = str(description.state).endswith("STABLE")
    return stable and any(m.assignment.topic_partitions for m in description.members)

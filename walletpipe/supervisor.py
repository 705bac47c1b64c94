"""Run every service as a child process, restart the ones that exit, stop them all cleanly.

Each service is its own process (the API under uvicorn, the stream worker, the ledger
writer, the gateway, the analytics service) so one crash cannot corrupt another's state.
With ``restart`` on (``walletpipe run``, ``demo``, ``bench/chaos``), ``tend`` restarts a
service that exited after a bounded exponential backoff and leaves the others running; a
service that exits too often (``RestartPolicy``: 5 times within 120 s) is reported as a
crash loop, loudly and with the tail of its log, and keeps being retried at the longest
delay. What runs, with pids, restarts and crash loops, is written to a status file
(``<local dir>/services.json``) that ``walletpipe status`` shows and the chaos driver reads.
Without ``restart`` (the end-to-end tests' fixture) an exit is an error ``check_alive``
raises, so a test cannot pass over a crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from confluent_kafka.admin import AdminClient

from domain.backoff import Backoff, CrashWindow

STOP_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 120.0
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class RestartPolicy:
    """Restarts wait ``delay_initial_s``, twice that ... up to ``delay_max_s``; a service up
    for ``healthy_after_s`` starts over at the shortest delay; ``crash_loop_exits`` exits
    within ``crash_loop_window_s`` are a crash loop."""

    delay_initial_s: float = 0.5
    delay_max_s: float = 30.0
    healthy_after_s: float = 15.0
    crash_loop_exits: int = 5
    crash_loop_window_s: float = 120.0


@dataclass
class Service:
    name: str
    argv: list[str]
    health_url: str | None = None
    consumer_group: str | None = None
    #: Variables of this service alone (a ledger shard's LEDGER_SHARD).
    env: dict[str, str] | None = None


@dataclass
class ServiceState:
    """What the supervisor knows of one service between its starts and exits."""

    service: Service
    child: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    exits: int = 0
    last_exit_code: int | None = None
    last_exit_at: str | None = None
    #: Monotonic time of the next start while the service waits out its backoff.
    restart_due: float | None = None
    crash_loop: bool = False
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    backoff: Backoff = field(init=False)
    window: CrashWindow = field(init=False)

    def __post_init__(self) -> None:
        self.backoff = Backoff(self.policy.delay_initial_s, self.policy.delay_max_s)
        self.window = CrashWindow(self.policy.crash_loop_exits, self.policy.crash_loop_window_s)

    def status(self) -> str:
        if self.child is not None and self.child.poll() is None:
            return "crash-loop" if self.crash_loop else "running"
        return "crash-loop" if self.crash_loop else "restarting"


def ledger_services(env: dict[str, str], python: str) -> list[Service]:
    """One writer per ledger shard (LEDGER_DATABASE_URLS), or the one writer."""
    from domain.shards import split_database_urls

    argv = [python, "-m", "ledger_writer.writer"]
    count = len(split_database_urls(env.get("LEDGER_DATABASE_URLS", "")))
    if count <= 1:
        return [
            Service(
                "ledger",
                argv,
                consumer_group="ledger-writer",
                env=metrics_port(env, "LEDGER_0"),
            )
        ]
    return [
        Service(
            f"ledger-{i}",
            argv,
            consumer_group=f"ledger-writer-shard-{i}",
            env={"LEDGER_SHARD": str(i), **metrics_port(env, f"LEDGER_{i}")},
        )
        for i in range(count)
    ]


def ingest_server_options(env: dict[str, str]) -> list[str]:
    """uvicorn's fast event loop and HTTP parser, and one worker process per core
    (``INGEST_WORKERS`` to choose): the API's work is CPU in Python, one core per process.
    Workers share nothing in memory: each keeps its own caches (kept fresh by revision
    polling), and the rate limits live in a file they share."""
    workers = env.get("INGEST_WORKERS") or str(os.cpu_count() or 1)
    return ["--loop", "uvloop", "--http", "httptools", "--workers", workers]


def metrics_port(env: dict[str, str], name: str) -> dict[str, str]:
    """``METRICS_PORT`` for one service, from the stack's ``METRICS_PORT_<NAME>`` (none for
    a stack brought up before services had metrics ports: they then serve no /metrics)."""
    port = env.get(f"METRICS_PORT_{name}")
    return {"METRICS_PORT": port} if port else {}


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
                *ingest_server_options(env),
            ],
            health_url=f"{env['INGEST_URL']}/health",
        ),
        Service(
            "streams",
            [python, "-m", "streams.app"],
            consumer_group="wallet-streams",
            env=metrics_port(env, "STREAMS"),
        ),
        *ledger_services(env, python),
        # The simulated payment gateway that answers the ledger's two-phase holds.
        Service(
            "gateway",
            [python, "-m", "ledger_writer.gateway"],
            consumer_group="payment-gateway",
            env=metrics_port(env, "GATEWAY"),
        ),
        # Webhooks: reads the pipeline's outcomes, delivers them to the clients' endpoints.
        Service(
            "notifications", [python, "-m", "notifications.service"], consumer_group="notifications"
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
    """``restart``: restart services that exit (``tend``); ``status_path``: where to write
    what runs (None: nowhere)."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        repo_root: Path,
        *,
        restart: bool = False,
        status_path: Path | None = None,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.env = {
            **os.environ,
            **env,
            "PYTHONUNBUFFERED": "1",
            "STREAMS_DATA_DIR": str(log_dir.parent / "streams"),
        }
        self.log_dir = log_dir
        self.repo_root = repo_root
        self.restart = restart
        self.status_path = status_path
        self.policy = policy or RestartPolicy()
        self.states: dict[str, ServiceState] = {}
        self._lock = threading.RLock()
        self._stopping = False

    @property
    def children(self) -> dict[str, subprocess.Popen]:
        """The live process of each service that has one (restarted ones replaced)."""
        with self._lock:
            return {n: s.child for n, s in self.states.items() if s.child is not None}

    def start(self, wanted: list[Service]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._stopping = False
            for service in wanted:
                state = self.states.setdefault(
                    service.name, ServiceState(service, policy=self.policy)
                )
                state.service = service
                self._spawn(state)
            self.write_status()

    def _spawn(self, state: ServiceState) -> None:
        service = state.service
        with open(self.log_dir / f"{service.name}.log", "ab") as log:
            state.child = subprocess.Popen(
                service.argv,
                env={**self.env, **(service.env or {})},
                cwd=self.repo_root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        state.started_at = time.monotonic()
        state.restart_due = None

    def wait_ready(
        self,
        wanted: list[Service],
        timeout_s: float = READY_TIMEOUT_S,
        stop: threading.Event | None = None,
    ) -> None:
        """Until every service answers its health check or serves its consumer group;
        returns early once ``stop`` is set."""
        deadline = time.monotonic() + timeout_s
        admin = AdminClient({"bootstrap.servers": self.env["KAFKA_BOOTSTRAP"]})
        pending = list(wanted)
        while pending and not (stop is not None and stop.is_set()):
            if self.restart:
                self.tend()
            else:
                self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout_s:.0f}s: {[s.name for s in pending]}")
            pending = [s for s in pending if not _ready(s, admin)]
            time.sleep(0.5)

    def check_alive(self) -> None:
        """Raise if any service has exited since it was started (restarted or not)."""
        with self._lock:
            for name, state in self.states.items():
                exited = state.child is None or state.child.poll() is not None
                if exited or state.exits:
                    code = state.last_exit_code if state.child is None else state.child.poll()
                    raise RuntimeError(
                        f"service {name} exited with {code} ({state.exits} exit(s), "
                        f"{state.restarts} restart(s)); last log lines:\n{self.log_tail(name)}"
                    )

    def tend(self) -> list[str]:
        """Notice exits, restart what is due; returns lines worth printing. Never raises
        for a service's exit: the others keep running."""
        lines: list[str] = []
        now = time.monotonic()
        changed = False
        with self._lock:
            if self._stopping:
                return lines
            for name, state in self.states.items():
                child = state.child
                if child is not None and child.poll() is not None:
                    lines.extend(self._exited(name, state, child.returncode, now))
                    changed = True
                elif child is not None and now - state.started_at > self.policy.healthy_after_s:
                    if state.backoff.attempts or state.crash_loop:
                        state.backoff.reset()
                        state.crash_loop = False
                        changed = True
                due = state.restart_due
                if state.child is None and due is not None and now >= due:
                    self._spawn(state)
                    state.restarts += 1
                    lines.append(f"supervisor: restarted {name} (pid {state.child.pid})")
                    changed = True
            if changed:
                self.write_status()
        for line in lines:
            print(line, flush=True)
        return lines

    def _exited(self, name: str, state: ServiceState, code: int, now: float) -> list[str]:
        state.child = None
        state.exits += 1
        state.last_exit_code = code
        state.last_exit_at = datetime.now(UTC).isoformat(timespec="seconds")
        state.window.record(now)
        delay = state.backoff.next_delay()
        state.restart_due = now + delay
        lines = [f"supervisor: {name} exited with {code}; restarting in {delay:.1f}s"]
        if state.window.looping(now):
            state.crash_loop = True
            lines.append(
                f"supervisor: CRASH LOOP: {name} exited {state.window.count(now)} times within "
                f"{self.policy.crash_loop_window_s:.0f}s (last exit {code}); still retrying, "
                f"every {self.policy.delay_max_s:.0f}s at most. Last log lines of "
                f"{self.log_dir / (name + '.log')}:\n{self.log_tail(name)}"
            )
        return lines

    def watch(self, stop: threading.Event, interval_s: float = 0.5) -> threading.Thread:
        """Tend in a background thread until ``stop`` is set (for callers that block)."""

        def loop() -> None:
            while not stop.wait(interval_s):
                self.tend()

        thread = threading.Thread(target=loop, name="supervisor", daemon=True)
        thread.start()
        return thread

    def snapshot(self) -> dict[str, dict[str, object]]:
        with self._lock:
            now = time.monotonic()
            return {
                name: {
                    "status": state.status(),
                    "pid": state.child.pid if state.child is not None else None,
                    "restarts": state.restarts,
                    "exits": state.exits,
                    "last_exit_code": state.last_exit_code,
                    "last_exit_at": state.last_exit_at,
                    "restart_in_s": None
                    if state.restart_due is None
                    else round(max(0.0, state.restart_due - now), 1),
                    "crash_loop": state.crash_loop,
                }
                for name, state in self.states.items()
            }

    def write_status(self) -> None:
        if self.status_path is None:
            return
        body = {
            "supervisor_pid": os.getpid(),
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "services": self.snapshot(),
        }
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        os.replace(tmp, self.status_path)

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        with path.open("rb") as handle:  # the end of a log that may be large
            handle.seek(max(0, path.stat().st_size - 64 * 1024))
            text = handle.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            running = [s.child for s in self.states.values() if s.child is not None]
            for state in self.states.values():
                state.restart_due = None
        for child in running:
            if child.poll() is None:
                _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in running:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.pid, signal.SIGKILL)
                child.wait(timeout=5)
        with self._lock:
            self.states.clear()
            if self.status_path is not None:
                self.status_path.unlink(missing_ok=True)


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass  # gone between the check and the signal


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

"""walletpipe.supervisor with real child processes (no stack needed): a service that exits is
restarted with backoff and the others keep running, a crash loop is reported with the log's
tail, the status file says what runs, and stop() stops everything for good."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from walletpipe.service_status import format_status, read_status
from walletpipe.supervisor import RestartPolicy, Service, Supervisor

FAST = RestartPolicy(delay_initial_s=0.05, delay_max_s=0.4, healthy_after_s=60, crash_loop_exits=3)
CRASHER = Service("crasher", [sys.executable, "-c", "print('boom: no database'); exit(3)"])
STEADY = Service("steady", [sys.executable, "-c", "import time; time.sleep(600)"])


def tend_until(supervisor: Supervisor, done, timeout_s: float = 30.0) -> list[str]:  # noqa: ANN001
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"not done in {timeout_s}s: {lines}"
        lines += supervisor.tend()
        time.sleep(0.05)
    return lines


@pytest.fixture
def supervisor(tmp_path: Path):  # noqa: ANN201
    supervisor = Supervisor(
        {},
        tmp_path / "logs",
        tmp_path,
        restart=True,
        status_path=tmp_path / "services.json",
        policy=FAST,
    )
    yield supervisor
    supervisor.stop()


def test_a_crashing_service_is_restarted_and_reported_while_the_others_run(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    supervisor.start([CRASHER, STEADY])
    steady_pid = supervisor.children["steady"].pid
    lines = tend_until(supervisor, lambda: supervisor.states["crasher"].crash_loop)

    assert supervisor.states["crasher"].restarts >= 2
    assert any("crasher exited with 3; restarting in" in line for line in lines)
    loop = next(line for line in lines if "CRASH LOOP" in line)
    assert "crasher exited 3 times" in loop and "boom: no database" in loop  # the log's tail
    assert supervisor.children["steady"].pid == steady_pid  # never touched
    assert supervisor.children["steady"].poll() is None

    status = read_status(tmp_path / "services.json")
    assert status is not None and status["supervisor_pid"] == os.getpid()
    assert status["services"]["crasher"]["crash_loop"] is True
    assert status["services"]["crasher"]["last_exit_code"] == 3
    assert status["services"]["steady"] == {**status["services"]["steady"], "status": "running"}
    assert "CRASH LOOP" in format_status(status)
    with pytest.raises(RuntimeError, match="crasher exited"):
        supervisor.check_alive()  # the tests' own fixture never lets an exit pass


def test_a_killed_service_comes_back_with_a_new_pid(supervisor: Supervisor) -> None:
    supervisor.start([STEADY])
    first = supervisor.children["steady"].pid
    os.killpg(first, signal.SIGKILL)
    tend_until(supervisor, lambda: supervisor.states["steady"].restarts == 1)
    second = supervisor.children["steady"]
    assert second.pid != first and second.poll() is None
    assert supervisor.states["steady"].last_exit_code == -signal.SIGKILL


def test_stop_stops_everything_and_nothing_restarts_after(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    supervisor.start([CRASHER, STEADY])
    steady = supervisor.children["steady"]
    supervisor.tend()
    supervisor.stop()
    assert steady.poll() is not None
    assert supervisor.tend() == [] and supervisor.children == {}
    assert read_status(tmp_path / "services.json") is None

"""Process and port plumbing shared by the Postgres and Kafka launchers.

Every call here is bounded: commands run with a timeout, waits poll against a deadline,
and a stop escalates from SIGTERM to SIGKILL. Processes are only ever signalled by pid
after checking their command line, so a recycled pid never kills a stranger.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from infra.exceptions import CommandFailedError, LockTimeoutError

POLL_INTERVAL_S = 0.1
OUTPUT_TAIL_LINES = 25


def say(component: str, message: str) -> None:
    """One progress line for the user watching `walletpipe up`."""
    print(f"{component}: {message}", flush=True)


def run(
    cmd: Sequence[str],
    *,
    timeout_s: float,
    user: str | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion or raise CommandFailedError with its output tail.

    `user` runs it through runuser: Postgres refuses to start as root and we often are.
    """
    argv = [*as_user(user), *cmd]
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailedError(f"timed out after {timeout_s:.0f}s: {shlex.join(argv)}") from exc
    except FileNotFoundError as exc:
        raise CommandFailedError(f"not found: {argv[0]}") from exc
    if done.returncode != 0:
        output = _tail_text((done.stdout or "") + (done.stderr or ""))
        raise CommandFailedError(f"exit {done.returncode}: {shlex.join(argv)}\n{output}")
    return done


def as_user(user: str | None) -> list[str]:
    """The prefix that drops root privileges to `user`; empty when not needed."""
    if user is None or os.geteuid() != 0:
        return []
    return ["runuser", "-u", user, "--"]


def spawn_daemon(cmd: Sequence[str], *, log_path: Path, cwd: Path) -> int:
    """Start a detached background process and return its pid.

    The shell backgrounds the command and exits at once, so the daemon is re-parented away
    from us: it outlives the CLI, is not our zombie when it dies, and sits in its own
    session so a Ctrl-C or closed terminal does not reach it.
    """
    line = f"{shlex.join(cmd)} >>{shlex.quote(str(log_path))} 2>&1 </dev/null & echo $!"
    done = subprocess.run(
        ["sh", "-c", line],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        start_new_session=True,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise CommandFailedError(f"could not start {shlex.join(cmd)}: {done.stderr.strip()}")
    return int(done.stdout.strip())


def pid_matches(pid: int, marker: str) -> bool:
    """True when `pid` is alive (not a zombie) and its command line contains `marker`."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def terminate(pid: int, *, marker: str, timeout_s: float) -> bool:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL. Returns True if it had to kill."""
    if not pid_matches(pid, marker):
        return False
    _signal(pid, signal.SIGTERM)
    if wait_gone(pid, marker=marker, timeout_s=timeout_s):
        return False
    _signal(pid, signal.SIGKILL)
    wait_gone(pid, marker=marker, timeout_s=5.0)
    return True


def wait_gone(pid: int, *, marker: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_matches(pid, marker):
            return True
        time.sleep(POLL_INTERVAL_S)
    return not pid_matches(pid, marker)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status if the process happens to be our own child."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().splitlines()[0].strip()
    except (FileNotFoundError, IndexError, PermissionError):
        return None
    return int(first) if first.isdigit() else None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on host:port right now.

    SO_REUSEADDR like the real servers, so sockets lingering in TIME_WAIT after a stop do
    not count as busy; a live listener still does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(base: int, *, taken: set[int], span: int) -> int:
    """The first free port at or above `base` not in `taken`; an ephemeral one past `span`."""
    for port in range(base, min(base + span, 65536)):
        if port not in taken and port_is_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_tcp(port: int, *, timeout_s: float, alive: Callable[[], bool]) -> bool:
    """Poll until something accepts on 127.0.0.1:port; False if `alive()` turns False."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            if not alive():
                return False
            time.sleep(0.2)
    return False


def tail(path: Path, lines: int = OUTPUT_TAIL_LINES) -> str:
    try:
        return _tail_text(path.read_text(errors="replace"), lines)
    except FileNotFoundError:
        return f"(no log at {path})"


def _tail_text(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def apt_install(packages: Sequence[str], *, timeout_s: float) -> None:
    """Install Debian packages non-interactively; only possible as root."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise CommandFailedError(
            f"missing {' '.join(packages)}: install them (infra/bootstrap.sh does it)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say("apt", f"installing {' '.join(packages)} ...")
    run(["apt-get", "update", "-q"], timeout_s=timeout_s, env=env)
    run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        timeout_s=timeout_s,
        env=env,
    )


@contextlib.contextmanager
def file_lock(path: Path, *, timeout_s: float) -> Iterator[None]:
    """Serialise `up`/`down` on one stack directory across processes (CLI vs. tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(f"{path} held for over {timeout_s:.0f}s") from exc
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""A throw-away PostgreSQL cluster under `<local_dir>/postgres`, made with Debian's binaries.

Postgres refuses to run as root, and these machines run everything as root, so initdb and
pg_ctl run as an unprivileged OS user (Debian's `postgres`) that owns the data directory.
The server listens on 127.0.0.1 only, with trust auth: it is a developer's sandbox.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from infra.exceptions import CommandFailedError, StartupTimeoutError
from infra.processes import (
    apt_install,
    as_user,
    pid_matches,
    read_pid,
    run,
    say,
    tail,
    wait_gone,
)
from infra.settings import StackSettings

CONF_NAME = "walletpipe.conf"


@dataclass(frozen=True)
class PostgresPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "postgres.log"

    @classmethod
    def under(cls, local_dir: Path) -> PostgresPaths:
        return cls(local_dir.resolve() / "postgres")


def database_url(settings: StackSettings, port: int, database: str | None = None) -> str:
    return f"postgresql://{settings.pg_db_user}@127.0.0.1:{port}/{database or settings.pg_database}"


def render_conf(port: int, paths: PostgresPaths, settings: StackSettings) -> str:
    """Server settings for a 2-core box taking batched ledger writes.

    fsync and full_page_writes stay on: this is a ledger and a crash must not lose a
    committed posting. WAL is sized so batch bursts do not force back-to-back checkpoints.
    """
    return f"""# Written by infra/postgres.py on every start; edit StackSettings, not this file.
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{paths.socket_dir}'
max_connections = {settings.pg_max_connections}
shared_buffers = {settings.pg_shared_buffers_mb}MB
effective_cache_size = 1GB
work_mem = 8MB
maintenance_work_mem = 128MB
fsync = on
full_page_writes = on
wal_compression = on
wal_buffers = 16MB
min_wal_size = 256MB
max_wal_size = 2GB
checkpoint_timeout = 10min
checkpoint_completion_target = 0.9
max_worker_processes = 4
max_parallel_workers = 2
max_parallel_workers_per_gather = 1
max_parallel_maintenance_workers = 1
random_page_cost = 1.1
timezone = 'UTC'
log_timezone = 'UTC'
lc_messages = 'C'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 1000
log_checkpoints = on
"""


def find_bindir(settings: StackSettings) -> Path:
    """Where initdb and pg_ctl live; installs the postgresql package as a last resort."""
    found = _discover_bindir(settings)
    if found is None and settings.install_missing_packages:
        apt_install(["postgresql"], timeout_s=settings.apt_timeout_s)
        found = _discover_bindir(settings)
    if found is None:
        raise CommandFailedError(
            "PostgreSQL server binaries not found: run infra/bootstrap.sh "
            "or set WALLETPIPE_PG_BINDIR"
        )
    return found


def _discover_bindir(settings: StackSettings) -> Path | None:
    if settings.pg_bindir is not None:
        return settings.pg_bindir if (settings.pg_bindir / "initdb").exists() else None
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        try:
            out = run(["pg_config", "--bindir"], timeout_s=10).stdout.strip()
            candidates.append(Path(out))
        except CommandFailedError:
            pass
    # pg_config may come from libpq-dev without a server; newest installed server wins.
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates.extend(Path(p) for p in versions)
    return next((c for c in candidates if (c / "initdb").exists()), None)


def _version_key(path: str) -> int:
    part = Path(path).parent.name
    return int(part) if part.isdigit() else 0


def server_user(settings: StackSettings) -> str | None:
    """The OS user the server runs as: None when we are not root (we run it ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(settings.pg_os_user)
    except KeyError:
        say("postgres", f"creating system user {settings.pg_os_user}")
        run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                settings.pg_os_user,
            ],
            timeout_s=30,
        )
    return settings.pg_os_user


def _grant_traversal(path: Path) -> None:
    """Let the server user reach its data dir: add search (o+x, not read) where missing.

    pytest's tmp dirs and mkdtemp dirs are 0700; without this initdb fails with a bare
    "permission denied".
    """
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            say("postgres", f"chmod o+x {parent} so the server user can traverse it")
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def running_pid(local_dir: Path) -> int | None:
    paths = PostgresPaths.under(local_dir)
    pid = read_pid(paths.data / "postmaster.pid")
    return pid if pid is not None and pid_matches(pid, str(paths.data)) else None


def start(local_dir: Path, port: int, settings: StackSettings) -> None:
    """initdb once, then start the server and create the database; no-op when running."""
    paths = PostgresPaths.under(local_dir)
    if (pid := running_pid(local_dir)) is not None:
        say("postgres", f"already running on 127.0.0.1:{port} (pid {pid})")
        return
    bindir = find_bindir(settings)
    user = server_user(settings)
    _prepare_dirs(paths, user)
    if not (paths.data / "PG_VERSION").exists():
        _initdb(bindir, paths, user, settings)
    conf = paths.data / CONF_NAME
    conf.write_text(render_conf(port, paths, settings))
    _chown(conf, user)
    say("postgres", f"starting on 127.0.0.1:{port} (log {paths.log_file})")
    _pg_ctl_start(bindir, paths, user, settings)
    _ensure_database(settings, port)


def _prepare_dirs(paths: PostgresPaths, user: str | None) -> None:
    for directory in (paths.root, paths.data, paths.socket_dir, paths.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    for directory in (paths.data, paths.socket_dir, paths.log_dir):
        _chown(directory, user)
    paths.data.chmod(0o700)
    if user is not None:
        _grant_traversal(paths.root)


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user=user, group=pwd.getpwnam(user).pw_gid)


def _initdb(bindir: Path, paths: PostgresPaths, user: str | None, settings: StackSettings) -> None:
    say("postgres", f"initdb {paths.data} ...")
    run(
        [
            str(bindir / "initdb"),
            "-D",
            str(paths.data),
            "-U",
            settings.pg_db_user,
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ],
        timeout_s=settings.command_timeout_s,
        user=user,
        cwd=paths.root,
    )
    with (paths.data / "postgresql.conf").open("a") as handle:
        handle.write(f"\ninclude_if_exists = '{CONF_NAME}'\n")


def _pg_ctl_start(
    bindir: Path, paths: PostgresPaths, user: str | None, settings: StackSettings
) -> None:
    # Own session: the postmaster must not die with the terminal that ran `walletpipe up`.
    argv = [
        *as_user(user),
        str(bindir / "pg_ctl"),
        "start",
        "-D",
        str(paths.data),
        "-l",
        str(paths.log_file),
        "-w",
        "-t",
        str(int(settings.pg_start_timeout_s)),
    ]
    try:
        done = subprocess.run(
            argv,
            cwd=paths.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=settings.pg_start_timeout_s + 10,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise StartupTimeoutError(f"postgres did not start; see {paths.log_file}") from exc
    if done.returncode != 0:
        raise StartupTimeoutError(
            f"postgres did not start ({done.stderr.strip()}); {paths.log_file}:\n"
            + tail(paths.log_file)
        )


def _ensure_database(settings: StackSettings, port: int) -> None:
    ensure_database(settings, port, settings.pg_database)


def shard_database_names(settings: StackSettings, count: int) -> list[str]:
    """The ledger shards' databases, beside the directory (`wallet_shard_0`, ...)."""
    return [f"{settings.pg_database}_shard_{i}" for i in range(count)]


def ensure_database(settings: StackSettings, port: int, name: str) -> None:
    """CREATE DATABASE ``name`` unless it exists (names are ours: letters, digits, _)."""
    if not name.replace("_", "").isalnum():
        raise CommandFailedError(f"refusing to create database {name!r}: not a plain name")
    url = database_url(settings, port, database="postgres")
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            say("postgres", f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')


def stop(local_dir: Path, settings: StackSettings) -> bool:
    """pg_ctl stop -m fast; escalate to immediate. Returns whether a server was running.

    `pg_ctl stop -w` returns once postmaster.pid is unlinked, which the postmaster does a
    moment before it exits; we also wait for the process itself, so that when this returns
    no server process is left and its port is free.
    """
    paths = PostgresPaths.under(local_dir)
    pid = running_pid(local_dir)
    if pid is None:
        return False
    bindir = find_bindir(settings)
    user = server_user(settings)
    say("postgres", "stopping (fast) ...")
    for mode in ("fast", "immediate"):
        try:
            run(
                [
                    str(bindir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(paths.data),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    str(int(settings.stop_timeout_s)),
                ],
                timeout_s=settings.stop_timeout_s + 10,
                user=user,
                cwd=paths.root,
            )
        except CommandFailedError as exc:
            if running_pid(local_dir) is not None:
                say("postgres", f"stop -m {mode} failed: {exc}")
                continue
        if wait_gone(pid, marker=str(paths.data), timeout_s=settings.stop_timeout_s):
            return True
        say("postgres", f"postmaster pid {pid} still running after stop -m {mode}")
    raise CommandFailedError(f"postgres would not stop; see {paths.log_file}")

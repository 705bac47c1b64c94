"""`walletpipe up/down/status`: the local stack as one idempotent unit.

`up` is safe to repeat: ports, the Kafka cluster id and the demo API key are chosen once
and kept in `<local_dir>/stack.json`; running components are left alone; migrations and
topics are applied only where missing. Connection settings for the services are written
to `<local_dir>/stack.env`.

    python -m infra.stack up|down|status [--local-dir .local]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from pathlib import Path

from domain.shards import ShardMap
from domain.topics import all_topic_names_with_partitions, topic_configs
from infra import kafka, postgres
from infra.exceptions import ShardCountChangedError, StackNotUpError
from infra.migrate import apply_migrations, ensure_demo_client
from infra.port_registry import PortRegistry, default_path
from infra.processes import file_lock, pick_port, port_is_free, say
from infra.settings import StackSettings

DEFAULT_LOCAL_DIR = Path(__file__).resolve().parent.parent / ".local"
STATE_FILE = "stack.json"
ENV_FILE = "stack.env"
LOCK_FILE = "stack.lock"
ENV_KEYS = (
    "KAFKA_BOOTSTRAP",
    "DATABASE_URL",
    "CLICKHOUSE_DSN",
    "INGEST_URL",
    "ANALYTICS_URL",
    "DEMO_API_KEY",
    "STREAMS_MODELS_DIR",
)


@dataclass
class StackState:
    """What must stay stable across `up` calls, persisted as stack.json."""

    kafka_cluster_id: str
    demo_api_key: str
    ports: dict[str, int] = field(default_factory=dict)
    #: Ledger shards the stack runs (1: the directory database is the ledger).
    ledger_shards: int = 1


def up(local_dir: Path, *, settings: StackSettings | None = None) -> dict[str, str]:
    """Bring up PostgreSQL and Kafka, migrate, create topics; return the stack.env mapping."""
    settings = settings or StackSettings()
    local_dir = local_dir.resolve()
    local_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(local_dir / LOCK_FILE, timeout_s=settings.lock_timeout_s):
        loaded = _load_state(local_dir)
        state = loaded or _new_state()
        state.ledger_shards = _shard_count(loaded, settings)
        registry = PortRegistry(settings.port_registry or default_path(), STATE_FILE)
        with registry.claiming(local_dir, timeout_s=settings.lock_timeout_s) as claims:
            state.ports = _assign_ports(
                local_dir, state.ports, settings, claims.others, ledger_shards=state.ledger_shards
            )
            claims.ports = state.ports
        _save_state(local_dir, state)
        ports = state.ports
        # Kafka boots in the background while Postgres initialises: 2 cores, both busy.
        kafka.start(
            local_dir, ports["kafka"], ports["kafka_controller"], state.kafka_cluster_id, settings
        )
        postgres.start(local_dir, ports["postgres"], settings)
        env = build_env(local_dir, state, settings)
        _migrate(env["DATABASE_URL"], state, settings)
        for name in shard_names(state, settings):
            postgres.ensure_database(settings, ports["postgres"], name)
            url = postgres.database_url(settings, ports["postgres"], name)
            applied = apply_migrations(url)
            say("postgres", f"{name}: " + (", ".join(applied) or "migrations up to date"))
        kafka.wait_ready(local_dir, ports["kafka"], settings, state.kafka_cluster_id)
        kafka.create_topics(
            env["KAFKA_BOOTSTRAP"],
            all_topic_names_with_partitions(),
            settings.kafka_admin_timeout_s,
            topic_configs(),
        )
        (local_dir / "clickhouse").mkdir(exist_ok=True)
        _write_private(local_dir / ENV_FILE, render_env(env))
    say("stack", f"up; settings in {local_dir / ENV_FILE}")
    return env


def down(local_dir: Path, *, settings: StackSettings | None = None) -> None:
    """Stop Kafka, then PostgreSQL; a no-op for components (or stacks) not running."""
    settings = settings or StackSettings()
    local_dir = local_dir.resolve()
    if not local_dir.is_dir():
        return
    with file_lock(local_dir / LOCK_FILE, timeout_s=settings.lock_timeout_s):
        stopped_kafka = kafka.stop(local_dir, settings)
        stopped_pg = postgres.stop(local_dir, settings)
    if stopped_kafka or stopped_pg:
        say("stack", "down")


def status(local_dir: Path, *, settings: StackSettings | None = None) -> list[tuple[str, str, str]]:
    """(component, "running"|"stopped", where) for each process the stack owns."""
    settings = settings or StackSettings()
    local_dir = local_dir.resolve()
    ports = (_load_state(local_dir) or StackState("", "")).ports
    pids = {
        "postgres": postgres.running_pid(local_dir),
        "kafka": kafka.running_pid(local_dir, settings),
    }
    rows = []
    for component, pid in pids.items():
        port = ports.get(component)
        where = f"127.0.0.1:{port}" if port else "-"
        if pid is None:
            rows.append((component, "stopped", where))
        else:
            rows.append((component, "running", f"{where} pid {pid}"))
    return rows


def format_status(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(2)] if rows else [0, 0]
    return "\n".join(
        f"{name.ljust(widths[0])}  {state.ljust(widths[1])}  {where}" for name, state, where in rows
    )


def read_env(local_dir: Path) -> dict[str, str]:
    path = local_dir / ENV_FILE
    try:
        return parse_env(path.read_text())
    except FileNotFoundError as exc:
        raise StackNotUpError(f"{path} does not exist: run `walletpipe up` first") from exc


def _shard_count(loaded: StackState | None, settings: StackSettings) -> int:
    """The stack keeps the shard count it was first brought up with: users are placed by
    it, and moving them between databases (resharding) is not something `up` does."""
    wanted = ShardMap(settings.ledger_shards or (loaded.ledger_shards if loaded else 1)).count
    if loaded is not None and wanted != loaded.ledger_shards:
        raise ShardCountChangedError(
            f"this stack runs {loaded.ledger_shards} ledger shard(s), not {wanted}: "
            "resharding is not supported; `walletpipe down` and remove the stack's directory "
            "to start over with another count"
        )
    return wanted


def shard_names(state: StackState, settings: StackSettings) -> list[str]:
    """The shard databases (none with one shard: the directory is the ledger)."""
    if state.ledger_shards <= 1:
        return []
    return postgres.shard_database_names(settings, state.ledger_shards)


def build_env(local_dir: Path, state: StackState, settings: StackSettings) -> dict[str, str]:
    ports = state.ports
    shards = [
        postgres.database_url(settings, ports["postgres"], name)
        for name in shard_names(state, settings)
    ]
    return {
        **({"LEDGER_DATABASE_URLS": ",".join(shards)} if shards else {}),
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['kafka']}",
        "DATABASE_URL": postgres.database_url(settings, ports["postgres"]),
        "CLICKHOUSE_DSN": f"chdb://{local_dir.resolve() / 'clickhouse'}",
        "INGEST_URL": f"http://127.0.0.1:{ports['ingest']}",
        "ANALYTICS_URL": f"http://127.0.0.1:{ports['analytics']}",
        # /metrics of the services without an HTTP API of their own (infra/metrics.py).
        **{
            f"METRICS_PORT_{name.removeprefix('metrics_').upper()}": str(port)
            for name, port in ports.items()
            if name.startswith("metrics_")
        },
        "DEMO_API_KEY": state.demo_api_key,
        # The registry `walletpipe models train` fills; the stream's champion comes from it.
        "STREAMS_MODELS_DIR": str(local_dir.resolve() / "models"),
    }


def render_env(env: dict[str, str]) -> str:
    lines = ["# Written by `walletpipe up` (infra/stack.py); contains a secret, mode 0600."]
    lines += [f"{key}={value}" for key, value in env.items()]
    return "\n".join(lines) + "\n"


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments skipped; values taken verbatim."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        key, value = stripped.split("=", 1)
        env[key.strip()] = value.strip()
    return env


def _migrate(database_url: str, state: StackState, settings: StackSettings) -> None:
    applied = apply_migrations(database_url)
    say(
        "postgres",
        f"migrations applied: {', '.join(applied)}" if applied else "migrations up to date",
    )
    if not ensure_demo_client(
        database_url,
        name=settings.demo_client_name,
        api_key=state.demo_api_key,
        rate_limit_per_second=settings.demo_client_rate_limit_per_second,
    ):
        say(
            "postgres",
            "WARNING api_key_issue missing (no migration creates it yet); "
            "demo API client not registered",
        )


def _new_state() -> StackState:
    return StackState(
        kafka_cluster_id=kafka.new_cluster_id(), demo_api_key="wp_demo_" + secrets.token_urlsafe(24)
    )


def _load_state(local_dir: Path) -> StackState | None:
    try:
        raw = json.loads((local_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    return StackState(
        kafka_cluster_id=raw["kafka_cluster_id"],
        demo_api_key=raw["demo_api_key"],
        ports={k: int(v) for k, v in raw.get("ports", {}).items()},
        ledger_shards=int(raw.get("ledger_shards", 1)),
    )


def _save_state(local_dir: Path, state: StackState) -> None:
    _write_private(local_dir / STATE_FILE, json.dumps(asdict(state), indent=2) + "\n")


def _write_private(path: Path, text: str) -> None:
    """Atomic replace with mode 0600: both files carry the demo API key."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _assign_ports(
    local_dir: Path,
    ports: dict[str, int],
    settings: StackSettings,
    claimed_elsewhere: AbstractSet[int] = frozenset(),
    *,
    ledger_shards: int = 1,
) -> dict[str, int]:
    """Keep persisted ports; pick missing ones; move a stopped server off a port now taken.

    ``claimed_elsewhere``: ports other stacks on this machine hold (infra/port_registry.py).
    A persisted port one of them holds too is picked again, unless our own server runs on
    it. Otherwise the HTTP ports never move: busy there usually means our service is up.
    """
    ports = dict(ports)
    running = {
        "postgres": postgres.running_pid(local_dir) is not None,
        "kafka": kafka.running_pid(local_dir, settings) is not None,
    }
    running["kafka_controller"] = running["kafka"]
    for name, is_running in running.items():
        if name in ports and not is_running and not port_is_free(ports[name]):
            say("stack", f"port {ports[name]} ({name}) is taken by another process; moving")
            del ports[name]
    for name in list(ports):
        if ports[name] in claimed_elsewhere and not running.get(name, False):
            say("stack", f"port {ports[name]} ({name}) belongs to another stack; moving")
            del ports[name]
    bases = {
        "postgres": settings.pg_port_base,
        "kafka": settings.kafka_port_base,
        "kafka_controller": settings.kafka_port_base + 1,
        "ingest": settings.http_port_base,
        "analytics": settings.http_port_base + 1,
        # /metrics of the stream worker, the gateway and each ledger writer (infra/metrics.py).
        "metrics_streams": settings.http_port_base + 2,
        "metrics_gateway": settings.http_port_base + 3,
        **{
            f"metrics_ledger_{shard}": settings.http_port_base + 4 + shard
            for shard in range(max(1, ledger_shards))
        },
    }
    taken = set(ports.values()) | _neighbour_ports(local_dir) | set(claimed_elsewhere)
    for name, base in bases.items():
        if name not in ports:
            ports[name] = pick_port(base, taken=taken, span=settings.port_search_span)
            taken.add(ports[name])
    return ports


def _neighbour_ports(local_dir: Path) -> set[int]:
    """Ports already promised to stacks beside this one (`.local`, `.local/dev`, ...).

    A stopped stack's ports are free on the wire, yet its services will want them back;
    picking around them keeps two stacks of one checkout from fighting over a port.
    """
    paths = {local_dir.parent / STATE_FILE, *local_dir.parent.glob(f"*/{STATE_FILE}")}
    paths |= set(local_dir.glob(f"*/{STATE_FILE}"))
    paths.discard(local_dir / STATE_FILE)
    ports: set[int] = set()
    for path in paths:
        try:
            ports.update(int(p) for p in json.loads(path.read_text()).get("ports", {}).values())
        except (OSError, ValueError, AttributeError, TypeError):
            continue  # unreadable or foreign file: nothing promised
    return ports


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local stack: PostgreSQL + Kafka + chDB dir")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--local-dir", type=Path, default=DEFAULT_LOCAL_DIR)
    args = parser.parse_args(argv)
    if args.command == "up":
        for key, value in up(args.local_dir).items():
            print(f"{key}={value}")
    elif args.command == "down":
        down(args.local_dir)
    else:
        print(format_status(status(args.local_dir)))


if __name__ == "__main__":
    main()

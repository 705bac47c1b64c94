"""Pure helpers of the local stack: env files, configs, ids, ports. Starts nothing."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest

from infra.kafka import new_cluster_id, render_server_properties
from infra.postgres import PostgresPaths, database_url, render_conf
from infra.processes import pick_port, port_is_free
from infra.settings import StackSettings
from infra.stack import format_status, parse_env, render_env


def test_env_file_round_trips() -> None:
    env = {
        "KAFKA_BOOTSTRAP": "127.0.0.1:19092",
        "DATABASE_URL": "postgresql://wallet@127.0.0.1:15432/wallet",
        "DEMO_API_KEY": "wp_demo_a=b",
    }
    text = render_env(env)
    assert text.startswith("#")
    assert parse_env(text) == env
    assert parse_env("\n# comment\nnot a pair\n A = b \n") == {"A": "b"}


def test_cluster_id_is_a_kafka_uuid() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_server_properties_single_node_kraft() -> None:
    text = render_server_properties(19092, 19093, Path("/x/data"))
    props = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["auto.create.topics.enable"] == "false"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.dirs"] == "/x/data"


def test_postgres_conf_keeps_durability_and_binds_loopback() -> None:
    settings = StackSettings()
    text = render_conf(15999, PostgresPaths(Path("/x/postgres")), settings)
    assert "port = 15999" in text
    assert "listen_addresses = '127.0.0.1'" in text
    assert "fsync = on" in text
    assert "unix_socket_directories = '/x/postgres/run'" in text
    assert database_url(settings, 15999) == "postgresql://wallet@127.0.0.1:15999/wallet"


def test_settings_read_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALLETPIPE_KAFKA_HEAP_MAX_MB", "1024")
    monkeypatch.setenv("KAFKA_HEAP_MAX_MB", "1")
    assert StackSettings().kafka_heap_max_mb == 1024


def test_pick_port_skips_busy_and_taken_ports() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not port_is_free(port)
        chosen = pick_port(port, taken={port + 1}, span=50)
        assert chosen not in (port, port + 1)


def test_format_status_aligns_columns() -> None:
    text = format_status(
        [("postgres", "running", "127.0.0.1:15432 pid 1"), ("kafka", "stopped", "-")]
    )
    lines = text.splitlines()
    assert lines[0].index("running") == lines[1].index("stopped")
    assert format_status([]) == ""


def test_new_stack_avoids_ports_promised_to_a_neighbour(tmp_path: Path) -> None:
    from infra.stack import STATE_FILE, _assign_ports

    neighbour = {
        "postgres": 15432,
        "kafka": 19092,
        "kafka_controller": 19093,
        "ingest": 18080,
        "analytics": 18081,
        "metrics_streams": 18082,
        "metrics_gateway": 18083,
        "metrics_ledger_0": 18084,
    }
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / STATE_FILE).write_text(json.dumps({"ports": neighbour}))
    ports = _assign_ports(tmp_path / "test-stack", {}, StackSettings())
    assert set(ports) == set(neighbour)
    assert not set(ports.values()) & set(neighbour.values())
    assert len(set(ports.values())) == len(ports)
    kept = _assign_ports(tmp_path / "test-stack", ports, StackSettings())
    assert kept == ports


def test_ledger_shards_are_chosen_once_per_stack() -> None:
    from infra.exceptions import ShardCountChangedError
    from infra.stack import StackState, _shard_count, build_env, shard_names

    assert _shard_count(None, StackSettings()) == 1
    assert _shard_count(None, StackSettings(ledger_shards=2)) == 2
    made_with_two = StackState("cluster", "key", ledger_shards=2)
    assert _shard_count(made_with_two, StackSettings()) == 2  # unset: keep it
    with pytest.raises(ShardCountChangedError):
        _shard_count(made_with_two, StackSettings(ledger_shards=3))
    assert shard_names(made_with_two, StackSettings()) == ["wallet_shard_0", "wallet_shard_1"]
    ports = {"kafka": 1, "postgres": 2, "ingest": 3, "analytics": 4}
    env = build_env(Path("/tmp/x"), StackState("c", "k", ports, ledger_shards=2), StackSettings())
    assert env["LEDGER_DATABASE_URLS"] == (
        "postgresql://wallet@127.0.0.1:2/wallet_shard_0,postgresql://wallet@127.0.0.1:2/wallet_shard_1"
    )
    assert "LEDGER_DATABASE_URLS" not in build_env(
        Path("/tmp/x"), StackState("c", "k", ports), StackSettings()
    )


def test_one_ledger_writer_per_shard() -> None:
    from walletpipe.supervisor import services

    env = {"INGEST_URL": "http://127.0.0.1:1", "ANALYTICS_URL": "http://127.0.0.1:2"}
    assert [s.name for s in services(env, {"ledger"})] == ["ledger"]
    sharded = {**env, "LEDGER_DATABASE_URLS": "postgresql://a/s0,postgresql://a/s1"}
    writers = services(sharded, {"ledger"})
    assert [(s.name, s.consumer_group, s.env) for s in writers] == [
        ("ledger-0", "ledger-writer-shard-0", {"LEDGER_SHARD": "0"}),
        ("ledger-1", "ledger-writer-shard-1", {"LEDGER_SHARD": "1"}),
    ]


def test_two_checkouts_never_pick_the_same_ports(tmp_path: Path) -> None:
    """Stacks in unrelated directories (two clones) see each other through the registry,
    even while neither runs anything: the HTTP ports are only bound by `walletpipe run`."""
    from infra.port_registry import PortRegistry
    from infra.stack import STATE_FILE, _assign_ports

    registry = PortRegistry(tmp_path / "registry" / "ports.json", STATE_FILE)
    chosen = []
    for clone in ("clone-a", "clone-b"):
        local_dir = tmp_path / clone / "deep" / ".local"
        local_dir.mkdir(parents=True)
        with registry.claiming(local_dir, timeout_s=5) as claims:
            ports = _assign_ports(local_dir, {}, StackSettings(), claims.others)
            claims.ports = ports
        (local_dir / STATE_FILE).write_text(json.dumps({"ports": ports}))
        chosen.append(ports)
    assert not set(chosen[0].values()) & set(chosen[1].values())
    # The first stack keeps its ports when it is brought up again.
    first = tmp_path / "clone-a" / "deep" / ".local"
    with registry.claiming(first, timeout_s=5) as claims:
        assert _assign_ports(first, chosen[0], StackSettings(), claims.others) == chosen[0]
    # A persisted port that another stack holds is picked again.
    clash = {**chosen[0], "ingest": chosen[1]["ingest"]}
    with registry.claiming(first, timeout_s=5) as claims:
        moved = _assign_ports(first, clash, StackSettings(), claims.others)
    assert moved["ingest"] not in chosen[1].values()
    # A removed stack promises nothing any more.
    (tmp_path / "clone-b" / "deep" / ".local" / STATE_FILE).unlink()
    with registry.claiming(first, timeout_s=5) as claims:
        assert not claims.others


def test_each_service_without_an_http_api_gets_a_metrics_port(tmp_path: Path) -> None:
    from infra.stack import _assign_ports
    from walletpipe.supervisor import services

    ports = _assign_ports(tmp_path / "two-shards", {}, StackSettings(), ledger_shards=2)
    assert {"metrics_streams", "metrics_gateway", "metrics_ledger_0", "metrics_ledger_1"} <= set(
        ports
    )
    assert len(set(ports.values())) == len(ports)
    env = {
        "INGEST_URL": "http://127.0.0.1:1",
        "ANALYTICS_URL": "http://127.0.0.1:2",
        "LEDGER_DATABASE_URLS": "postgresql://a/x,postgresql://a/y",
        **{
            f"METRICS_PORT_{n.removeprefix('metrics_').upper()}": str(p)
            for n, p in ports.items()
            if n.startswith("metrics_")
        },
    }
    given = {s.name: (s.env or {}).get("METRICS_PORT") for s in services(env)}
    assert given["ledger-1"] == str(ports["metrics_ledger_1"])
    assert given["streams"] == str(ports["metrics_streams"]) and given["ingest"] is None

"""Every knob of the local stack in one place, read from `WALLETPIPE_*` variables.

Built once by the caller (CLI, fixture) and passed down, so no module reads the
environment on its own. The defaults work on a fresh 2-core Debian machine.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WALLETPIPE_", extra="ignore")

    # PostgreSQL. None = discover (pg_config --bindir, then /usr/lib/postgresql/*/bin).
    pg_bindir: Path | None = None
    # Postgres refuses to run as root; as root we run the server as this OS user.
    pg_os_user: str = "postgres"
    pg_db_user: str = "wallet"
    pg_database: str = "wallet"
    #: Ledger shards (WALLETPIPE_LEDGER_SHARDS, 1..16): with N > 1, `up` creates and migrates
    #: databases <pg_database>_shard_0..N-1 beside the directory database. None = keep what
    #: the stack was first brought up with (1 for a new stack).
    ledger_shards: int | None = None
    pg_shared_buffers_mb: int = 256
    pg_max_connections: int = 100
    pg_start_timeout_s: float = 60.0

    # Kafka. The heap fits a 2-core dev box next to Postgres and the services.
    kafka_heap_min_mb: int = 256
    kafka_heap_max_mb: int = 768
    # None = <local_dir>/kafka/libs; tests point a throw-away stack at shared jars.
    kafka_libs_dir: Path | None = None
    kafka_start_timeout_s: float = 90.0
    kafka_admin_timeout_s: float = 15.0
    java_bin: str = "java"
    mvn_bin: str = "mvn"
    maven_timeout_s: float = 900.0

    # Ports are searched upward from these bases once, then persisted in stack.json.
    pg_port_base: int = 15432
    kafka_port_base: int = 19092
    http_port_base: int = 18080
    port_search_span: int = 200
    #: The machine-wide record of every stack's ports (infra/port_registry.py); None = a
    #: file per OS user in the temporary directory.
    port_registry: Path | None = None

    # Bounds on everything else.
    command_timeout_s: float = 120.0
    stop_timeout_s: float = 30.0
    lock_timeout_s: float = 900.0
    apt_timeout_s: float = 900.0
    # As root, apt-get install a missing postgresql / JDK / maven instead of failing.
    install_missing_packages: bool = True

    demo_client_name: str = "demo"
    demo_client_rate_limit_per_second: int = 1000

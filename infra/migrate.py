"""Apply `infra/migrations/NNNN_*.sql` in numeric order, each exactly once.

Every file runs in its own transaction together with its row in `schema_migrations`, so a
failing migration leaves no half-applied schema and is retried whole next time. A session
advisory lock makes concurrent migrators (two services starting at once) take turns.

    python -m infra.migrate --database-url postgresql://wallet@127.0.0.1:15432/wallet
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from infra.exceptions import MigrationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<slug>[A-Za-z0-9_\-]+)\.sql$")
# Arbitrary but fixed: every migrator of this project contends on the same key.
ADVISORY_LOCK_KEY = 7_042_001
LOCK_TIMEOUT = "60s"

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INT PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, order=True)
class Migration:
    version: int
    name: str


def plan(filenames: Iterable[str]) -> list[Migration]:
    """Order migration files by their numeric prefix.

    A `.sql` file that does not follow NNNN_name.sql, or two files sharing a version, is an
    error rather than something to skip: silently ignoring a migration is worse than
    refusing to start. Other files (README, editor backups) are ignored.
    """
    by_version: dict[int, Migration] = {}
    for filename in filenames:
        if not filename.endswith(".sql"):
            continue
        match = FILENAME.match(filename)
        if match is None:
            raise MigrationError(f"{filename}: migration files are named NNNN_name.sql")
        version = int(match["version"])
        if version in by_version:
            raise MigrationError(
                f"{filename} and {by_version[version].name} share version {version}"
            )
        by_version[version] = Migration(version, filename)
    return sorted(by_version.values())


def pending(migrations: Iterable[Migration], applied: set[int]) -> list[Migration]:
    """The migrations not yet recorded, in order; a late-merged lower number still runs."""
    return [m for m in sorted(migrations) if m.version not in applied]


def apply_migrations(database_url: str, migrations_dir: Path | None = None) -> list[str]:
    """Apply every pending migration; returns the file names newly applied, in order."""
    directory = migrations_dir or MIGRATIONS_DIR
    names = [p.name for p in directory.iterdir()] if directory.is_dir() else []
    migrations = plan(names)
    newly_applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            conn.execute(CREATE_TABLE)
            applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in pending(migrations, applied):
                _apply_one(conn, directory / migration.name, migration)
                newly_applied.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return newly_applied


def _apply_one(conn: psycopg.Connection, path: Path, migration: Migration) -> None:
    sql = path.read_text()
    try:
        with conn.transaction():
            # No parameters: psycopg sends the file as one simple query, so a migration
            # may hold many statements (and literal % signs).
            conn.execute(sql)  # type: ignore[arg-type]
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, now())",
                (migration.version, migration.name),
            )
    except psycopg.Error as exc:
        raise MigrationError(f"{migration.name} failed and was rolled back: {exc}") from exc


def hash_api_key(api_key: str) -> str:
    """How api_keys stores a key: sha256 hex, so the database never holds the secret."""
    return hashlib.sha256(api_key.encode()).hexdigest()


#: The demo client drives the simulator: it onboards users (customer_app) and pays at
#: points of sale (pos); it reads no reports and decides no reviews.
DEMO_ROLES = ["customer_app", "pos"]


def ensure_demo_client(
    database_url: str, *, name: str, api_key: str, rate_limit_per_second: int
) -> bool:
    """Register the demo client and its key (``api_key_issue`` leaves an existing key as it
    is); False when the schema has no keys yet (no migration)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT to_regproc('api_key_issue')").fetchone()
        if row is None or row[0] is None:
            return False
        conn.execute(
            "SELECT api_key_issue(p_client_name => %s, p_key_hash => %s, p_key_prefix => %s,"
            " p_roles => %s, p_label => 'demo', p_client_rate_limit => %s)",
            (name, hash_api_key(api_key), api_key[:10], DEMO_ROLES, rate_limit_per_second),
        )
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--migrations-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    applied = apply_migrations(args.database_url, args.migrations_dir)
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


if __name__ == "__main__":
    main()

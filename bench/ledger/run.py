"""bench/ledger: our single writer against the seed's lock-per-request design, same
PostgreSQL, same workloads.

    .venv/bin/python -m bench.ledger.run [--ours 100000] [--seed 10000] [--clients 32]

(a) our writer, uniform wallets; (b) our writer, hot merchants (80 % of payments go to 10
merchant wallets); (c) the seed's design, ported faithfully (one database transaction per
request: SELECT ... FOR UPDATE on the wallet balances, insert the transaction and its ledger
entries, update the balances, commit), driven by ``--clients`` concurrent clients (threads,
one connection each), on both workloads. It prints transfers/s and the ratios.

What "ours" measures: pre-encoded ``PostTransaction`` commands are handed to
``LedgerWriter.process`` in batches of ``--batch`` (5,000), as the consume loop would after
``consumer.consume``: decode, load state, plan, and one PostgreSQL transaction per batch
(COPY of transactions, events, entries with their hash chain, balances, offsets, outbox).
Kafka is not in the figure: it is the ledger's own throughput. Payments post in one phase
here (two-phase off), as the seed's synchronous design does.

A fresh database on the stack's PostgreSQL (``DATABASE_URL`` or ``.local/stack.env``) is
created with every migration and dropped afterwards. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from bench.ledger.cpu import CpuMeter, CpuSample, load_average, postmaster_pid
from domain import records
from domain.transactions import TransactionType
from infra.migrate import apply_migrations
from infra.stack import read_env
from ledger_writer import store
from ledger_writer.settings import LedgerSettings
from ledger_writer.writer import LedgerWriter

REPO = Path(__file__).resolve().parents[2]
FUNDS = Decimal("1000000.0000")
MERCHANTS = 10
HOT_SHARE = 0.8


@dataclass
class Message:
    """The slice of confluent_kafka.Message the writer reads."""

    _value: bytes
    _offset: int

    def topic(self) -> str:
        return "ledger.commands"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b""

    def error(self) -> None:
        return None


def make_wallets(conn: psycopg.Connection, count: int, kind: str) -> list[uuid.UUID]:
    """Users, wallets and funded balances by COPY; the clearing account pays for the funds so
    the books still sum to zero."""
    now = datetime.now(UTC)
    users = [uuid.uuid4() for _ in range(count)]
    wallets = [uuid.uuid4() for _ in range(count)]
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(
            "COPY users (user_id, email, phone_number, password_hash, salt, first_name,"
            " last_name, date_of_birth, status, kyc_status, created_at, updated_at) FROM STDIN"
        ) as copy:
            for user in users:
                copy.write_row(
                    (
                        user,
                        f"{user}@bench.invalid",
                        f"+{user.int % 10**14}",
                        "x",
                        "x",
                        "B",
                        "B",
                        "1990-01-01",
                        "ACTIVE",
                        "VERIFIED",
                        now,
                        now,
                    )
                )
        with cur.copy(
            "COPY wallets (wallet_id, user_id, wallet_type, currency_code, status, created_at,"
            " updated_at) FROM STDIN"
        ) as copy:
            for wallet, user in zip(wallets, users, strict=True):
                copy.write_row((wallet, user, kind, "USD", "ACTIVE", now, now))
        with cur.copy(
            "COPY wallet_balances (balance_id, wallet_id, available_balance, last_updated_at)"
            " FROM STDIN"
        ) as copy:
            for wallet in wallets:
                copy.write_row((uuid.uuid4(), wallet, FUNDS, now))
        cur.execute(
            "UPDATE system_balances SET balance = balance - %s"
            " WHERE account = 'EXTERNAL_CLEARING' AND currency_code = 'USD'",
            (FUNDS * count,),
        )
    return wallets


def workload(
    customers: list[uuid.UUID], merchants: list[uuid.UUID], count: int, hot: bool, seed: int
) -> list[records.PostTransaction]:
    """Uniform: transfers between random customers. Hot: 80 % payments to 10 merchants,
    the rest transfers between random customers."""
    rng = random.Random(seed)
    start = records.utc_now()
    client = uuid.uuid4()
    out = []
    for i in range(count):
        # Each command its own times, as live traffic has: none is formatted once for all.
        requested_at = start + timedelta(microseconds=37 * i)
        decided_at = requested_at + timedelta(milliseconds=3)
        source = rng.choice(customers)
        if hot and rng.random() < HOT_SHARE:
            kind, destination = TransactionType.PAYMENT, rng.choice(merchants)
        else:
            kind, destination = TransactionType.TRANSFER, rng.choice(customers)
            while destination == source:
                destination = rng.choice(customers)
        amount = Decimal(rng.randint(100, 5000)) / 100
        out.append(
            records.PostTransaction(
                transaction_id=uuid.uuid4(),
                transaction_type=kind,
                source_wallet_id=source,
                destination_wallet_id=destination,
                amount=amount,
                fee_amount=Decimal(0),
                total_amount=amount,
                currency_code="USD",
                client_id=client,
                idempotency_key=uuid.uuid4().hex,
                requested_at=requested_at,
                decided_at=decided_at,
            )
        )
    return out


@dataclass(frozen=True)
class RunResult:
    posted: int
    before: CpuSample
    after: CpuSample

    @property
    def wall_s(self) -> float:
        return self.after.wall_s - self.before.wall_s

    @property
    def process_s(self) -> float:
        return self.after.process_s - self.before.process_s

    @property
    def postgres_s(self) -> float:
        return self.after.postgres_s - self.before.postgres_s

    @property
    def per_s(self) -> float:
        return self.posted / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        """Transfers per CPU-second of this process and PostgreSQL together."""
        return self.posted / max(self.process_s + self.postgres_s, 1e-9)

    def cpu_text(self) -> str:
        return (
            f"cpu: bench process {self.process_s:6.2f} s, postgres {self.postgres_s:6.2f} s"
            f" = {self.per_cpu_s:>7,.0f} per CPU-second"
        )


def run_ours(
    url: str,
    commands: list[records.PostTransaction],
    batch: int,
    meter: CpuMeter,
    profile: Path | None = None,
) -> RunResult:
    writer = LedgerWriter(
        LedgerSettings(
            DATABASE_URL=url,
            KAFKA_BOOTSTRAP="unused:9092",
            consumer_group=f"bench-{uuid.uuid4().hex[:8]}",
            two_phase_types=[],
        )
    )
    messages = [Message(records.encode(c), i) for i, c in enumerate(commands)]
    profiler = cProfile.Profile() if profile is not None else None
    with psycopg.connect(url, autocommit=True) as conn:
        before = meter.sample()
        if profiler is not None:
            profiler.enable()
        for start in range(0, len(messages), batch):
            writer.process(conn, None, messages[start : start + batch])  # type: ignore[arg-type]
        if profiler is not None:
            profiler.disable()
        after = meter.sample()
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    return RunResult(writer.totals["posted"], before, after)


def seed_request(conn: psycopg.Connection, command: records.PostTransaction) -> bool:
    """The seed's processPayment: one transaction, row locks on both balances (in id order,
    so two requests never deadlock), check, insert the transaction and its entries, update
    the balances. Returns whether it posted."""
    source, destination = command.source_wallet_id, command.destination_wallet_id
    amount, now = command.amount, datetime.now(UTC)
    with conn.transaction():
        rows = conn.execute(
            "SELECT wallet_id, available_balance FROM wallet_balances"
            " WHERE wallet_id = ANY(%s) ORDER BY wallet_id FOR UPDATE",
            ([source, destination],),
        ).fetchall()
        balances = dict(rows)
        if balances[source] < amount:
            conn.execute(
                "INSERT INTO transactions (transaction_id, transaction_type, transaction_status,"
                " source_wallet_id, destination_wallet_id, amount, currency_code, fee_amount,"
                " total_amount, created_at, updated_at) VALUES (%s, %s, 'FAILED', %s, %s, %s,"
                " 'USD', 0, %s, %s, %s)",
                (
                    command.transaction_id,
                    command.transaction_type.value,
                    source,
                    destination,
                    amount,
                    amount,
                    now,
                    now,
                ),
            )
            return False
        conn.execute(
            "INSERT INTO transactions (transaction_id, transaction_type, transaction_status,"
            " source_wallet_id, destination_wallet_id, amount, currency_code, fee_amount,"
            " total_amount, created_at, updated_at, completed_at) VALUES (%s, %s, 'COMPLETED',"
            " %s, %s, %s, 'USD', 0, %s, %s, %s, %s)",
            (
                command.transaction_id,
                command.transaction_type.value,
                source,
                destination,
                amount,
                amount,
                now,
                now,
                now,
            ),
        )
        conn.execute(
            "INSERT INTO ledger_entries (entry_id, transaction_id, wallet_id, entry_type, amount,"
            " balance_after, created_at) VALUES (%s, %s, %s, 'DEBIT', %s, %s, %s),"
            " (%s, %s, %s, 'CREDIT', %s, %s, %s)",
            (
                uuid.uuid4(),
                command.transaction_id,
                source,
                amount,
                balances[source] - amount,
                now,
                uuid.uuid4(),
                command.transaction_id,
                destination,
                amount,
                balances[destination] + amount,
                now,
            ),
        )
        conn.execute(
            "UPDATE wallet_balances SET available_balance = available_balance - %s,"
            " last_updated_at = %s, version = version + 1 WHERE wallet_id = %s",
            (amount, now, source),
        )
        conn.execute(
            "UPDATE wallet_balances SET available_balance = available_balance + %s,"
            " last_updated_at = %s, version = version + 1 WHERE wallet_id = %s",
            (amount, now, destination),
        )
    return True


def run_seed(
    url: str, commands: list[records.PostTransaction], clients: int, meter: CpuMeter
) -> RunResult:
    """``clients`` threads, one connection each, take requests from a shared cursor."""
    lock = threading.Lock()
    cursor = iter(commands)
    posted = [0] * clients
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                while True:
                    with lock:
                        command = next(cursor, None)
                    if command is None:
                        return
                    posted[index] += seed_request(conn, command)
        except BaseException as error:  # noqa: BLE001 - reported after the run
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    before = meter.sample()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = meter.sample()
    if errors:
        raise errors[0]
    return RunResult(sum(posted), before, after)


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    local = Path(os.environ.get("WALLETPIPE_LOCAL_DIR", str(REPO / ".local")))
    return read_env(local)["DATABASE_URL"]


def server_postmaster(conn: psycopg.Connection) -> int | None:
    """The cluster's postmaster when its data directory is readable here (a local server)."""
    row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    return postmaster_pid(Path(row[0])) if row else None


def server_settings(conn: psycopg.Connection) -> str:
    """The durability settings both designs run under (the same server for both)."""
    names = ("fsync", "synchronous_commit", "full_page_writes", "wal_compression")
    values = [
        f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
        for name in names
    ]
    return ", ".join(values)


def report(who: str, label: str, result: RunResult, how: str) -> None:
    print(
        f"({who}) {label:13s} {result.posted:>8,} posted in {result.wall_s:6.2f} s "
        f"= {result.per_s:>9,.0f} transfers/s  ({how})"
    )
    print(f"       {'':13s} {result.cpu_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ours", type=int, default=100_000, help="commands per workload")
    parser.add_argument(
        "--seed", type=int, default=10_000, help="requests per workload (0: skip the seed)"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument(
        "--workloads", default="uniform,hot-merchant", help="comma-separated subset to run"
    )
    parser.add_argument("--profile", type=Path, help="cProfile our writer's runs into this file")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()
    workloads = [w for w in ("uniform", "hot-merchant") if w in args.workloads.split(",")]

    admin_url = database_url()
    name = f"bench_ledger_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        meter = CpuMeter(server_postmaster(admin))
        print(f"postgres: {server_settings(admin)} (the same server for both designs)")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    print(f"load average at start: {load_average()}")
    try:
        apply_migrations(url)
        with psycopg.connect(url, autocommit=True) as conn:
            store.ensure_system_accounts(conn, datetime.now(UTC))
            customers = make_wallets(conn, args.wallets, "PRIMARY")
            merchants = make_wallets(conn, MERCHANTS, "BUSINESS")
            conn.execute("ANALYZE")
        results: dict[str, RunResult] = {}
        for label in workloads:
            hot = label == "hot-merchant"
            ours = workload(customers, merchants, args.ours, hot, seed=1)
            profile = args.profile.with_suffix(f".{label}.prof") if args.profile else None
            results[f"ours/{label}"] = run_ours(url, ours, args.batch, meter, profile)
            report("ours", label, results[f"ours/{label}"], f"batches of {args.batch:,}")
            if args.seed:
                seed = workload(customers, merchants, args.seed, hot, seed=2)
                results[f"seed/{label}"] = run_seed(url, seed, args.clients, meter)
                report(
                    "seed",
                    label,
                    results[f"seed/{label}"],
                    f"{args.clients} clients, FOR UPDATE per request",
                )
        print()
        for label in workloads:
            if f"seed/{label}" not in results:
                continue
            ours, seed = results[f"ours/{label}"], results[f"seed/{label}"]
            print(
                f"ratio ours/seed {label:13s} {ours.per_s / seed.per_s:6.1f}x wall,"
                f" {ours.per_cpu_s / seed.per_cpu_s:6.1f}x per CPU-second"
            )
        print(f"load average at end: {load_average()}")
        if len(workloads) == 2 and args.seed:
            fast = min(results["ours/uniform"].per_s, results["ours/hot-merchant"].per_s)
            hot_ratio = results["ours/hot-merchant"].per_s / results["seed/hot-merchant"].per_s
            print(
                f"targets: ours >= 10,000/s: {'met' if fast >= 10_000 else 'NOT met'}; "
                f"hot-merchant >= 20x seed: {'met' if hot_ratio >= 20 else 'NOT met'}"
            )
    finally:
        if not args.keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()

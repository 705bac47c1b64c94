"""``walletpipe``: bring the local stack up, run the services, simulate traffic, check books.

Connection settings come from ``.local/stack.env`` (written by ``walletpipe up``); any
variable set in the environment wins, so the same commands drive a remote stack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def local_dir() -> Path:
    return Path(os.environ.get("WALLETPIPE_LOCAL_DIR", str(REPO_ROOT / ".local"))).resolve()


def stack_env(bring_up: bool = False) -> dict[str, str]:
    from infra import stack

    env = stack.up(local_dir()) if bring_up else stack.read_env(local_dir())
    keys = set(env) | {
        "KAFKA_BOOTSTRAP",
        "DATABASE_URL",
        "LEDGER_DATABASE_URLS",
        "CLICKHOUSE_DSN",
        "CLICKHOUSE_URL",
        "INGEST_URL",
        "ANALYTICS_URL",
        "DEMO_API_KEY",
        "STREAMS_MODELS_DIR",
    }
    env = {**env, **{k: os.environ[k] for k in keys if k in os.environ}}
    # A stack.env written before the stream served models: the stack's own registry.
    env.setdefault("STREAMS_MODELS_DIR", str(local_dir() / "models"))
    return env


def backtest_env() -> dict[str, str]:
    """The stack's settings, or the environment alone when no stack was brought up here
    (a backtest needs only CLICKHOUSE_DSN / CLICKHOUSE_URL or ANALYTICS_URL)."""
    from infra.exceptions import StackNotUpError

    try:
        return stack_env()
    except StackNotUpError:
        return dict(os.environ)


def backtest_key(env: dict[str, str]) -> str:
    from analytics.cli import cli_key

    return cli_key(env, local_dir())


def cmd_up(_args: argparse.Namespace) -> int:
    env = stack_env(bring_up=True)
    print(f"stack is up; settings in {local_dir() / 'stack.env'}")
    for key in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "CLICKHOUSE_DSN", "INGEST_URL", "ANALYTICS_URL"):
        print(f"  {key}={env.get(key, '')}")
    if env.get("LEDGER_DATABASE_URLS"):
        print(f"  LEDGER_DATABASE_URLS={env['LEDGER_DATABASE_URLS']}")
    return 0


def cmd_down(_args: argparse.Namespace) -> int:
    from infra import stack

    stack.down(local_dir())
    print("stack is down")
    return 0


def services_status_path() -> Path:
    """Where `walletpipe run` says what runs (read by `status` and bench/chaos)."""
    return local_dir() / "services.json"


def cmd_status(_args: argparse.Namespace) -> int:
    from infra import stack
    from walletpipe.service_status import format_status, read_status

    print(stack.format_status(stack.status(local_dir())))
    running = read_status(services_status_path())
    if running is None:
        print("services: not running (walletpipe run starts them)")
    else:
        print(f"services (walletpipe run, pid {running['supervisor_pid']}):")
        print(format_status(running))
    return 0


def _start_services(
    env: dict[str, str],
    only: set[str] | None,
    *,
    keep_going: bool = False,
    stop: threading.Event | None = None,
):  # noqa: ANN202
    """Start the services under a supervisor that restarts any that exits. With
    ``keep_going`` a service that is not ready in time is reported and left to the
    supervisor (``run``); otherwise everything stops and the error is raised (``demo``)."""
    from walletpipe.supervisor import Supervisor, services

    wanted = services(env, only)
    supervisor = Supervisor(
        env, local_dir() / "logs", REPO_ROOT, restart=True, status_path=services_status_path()
    )
    supervisor.start(wanted)
    print(f"starting {', '.join(s.name for s in wanted)} (logs in {local_dir() / 'logs'}) ...")
    try:
        supervisor.wait_ready(wanted, stop=stop)
    except TimeoutError as error:
        if not keep_going:
            supervisor.stop()
            raise
        print(f"WARNING {error}; the supervisor keeps restarting them (walletpipe status)")
    except BaseException:
        supervisor.stop()
        raise
    return supervisor


def cmd_run(args: argparse.Namespace) -> int:
    env = stack_env(bring_up=True)
    only = set(args.only.split(",")) if args.only else None
    stop = threading.Event()
    # Explicit handlers: a process started in the background may inherit SIGINT as ignored.
    # Installed before the services start: a SIGTERM meanwhile must still stop them all.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    supervisor = _start_services(env, only, keep_going=True, stop=stop)
    print(
        f"services started; API at {env['INGEST_URL']}, analytics at "
        f"{env['ANALYTICS_URL']}. A service that exits is restarted; Ctrl-C stops them all.",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            supervisor.tend()
    finally:
        print("stopping services ...", flush=True)
        supervisor.stop()
        print("services stopped", flush=True)
    return 0


def _simulate(env: dict[str, str], args: argparse.Namespace) -> dict:
    from walletpipe.simulate import SentLog, format_summary, run_simulation

    log = SentLog()
    started = datetime.now(UTC)
    summary = asyncio.run(
        run_simulation(
            env["INGEST_URL"],
            env["DEMO_API_KEY"],
            env["KAFKA_BOOTSTRAP"],
            args.tps,
            args.seconds,
            users=args.users,
            merchants=args.merchants,
            seed=args.seed,
            fraud=args.fraud,
            label_delay_s=None if args.no_labels else args.label_delay_s,
            log=log,
        )
    )
    print(format_summary(summary))
    _detection(env, args, started, log)
    return summary


def _detection(env: dict[str, str], args: argparse.Namespace, started: datetime, log) -> None:  # noqa: ANN001
    """The live detection report (printed; ``--report-json`` writes it). A report that
    cannot be read is a warning: the traffic itself was sent and checked."""
    from models.live_report import format_live_report
    from walletpipe.backtest import ReadFailed
    from walletpipe.detection import detection_report, write_report_json

    try:
        report = detection_report(env, started, log, lambda: backtest_key(env))
    except (ReadFailed, OSError, KeyError) as error:
        print(f"WARNING no live detection report: {error}")
        return
    except Exception as error:  # noqa: BLE001 - a report must not fail the run it reports on
        print(f"WARNING no live detection report: {type(error).__name__}: {error}")
        return
    print(format_live_report(report))
    if args.report_json:
        write_report_json(report, args.report_json)
        print(f"wrote {args.report_json}")


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.out:
        from walletpipe.simulate import format_summary, write_labelled_file

        start = datetime.fromisoformat(args.start)
        written = write_labelled_file(
            Path(args.out),
            args.days,
            args.users,
            args.merchants,
            args.seed,
            args.fraud,
            start if start.tzinfo else start.replace(tzinfo=UTC),
        )
        print(format_summary(written))
        return 0
    summary = _simulate(stack_env(), args)
    return 0 if summary["accepted"] else 1


def _report(env: dict[str, str], name: str) -> dict:
    from analytics.cli import report

    return report(env, local_dir(), name)


#: The demo's model history: a week each of training, label delay and test, and a day more
#: for the customers' and terminals' windows to fill.
DEMO_HISTORY_DAYS = 22


def _ensure_champion(env: dict[str, str], args: argparse.Namespace, train: bool = True) -> None:
    """Say which model the demo's stream decides with: the registry's champion, as a
    production stream would, or without one the online scorer.

    With ``train`` and no champion, one is trained here as ``walletpipe models train``
    would: on a labelled file of the same simulator's earlier traffic (its own seed, so not
    the transactions the demo then sends), a week each of training, label delay and test.
    Later demos reuse it; ``walletpipe models promote`` replaces it. Not by default: the
    demo sends hours of a customer's traffic within seconds, which a model trained on days
    of history reads as bursts (one run held 6 % of the requests for review, against 0.4 % or less
    with the online scorer, which learns from the demo's own traffic)."""
    from models.cli import DEFAULT_NAME
    from models.dataset import load
    from models.evaluation import Protocol, evaluate
    from models.registry import Registry
    from walletpipe.simulate import write_labelled_file

    registry = Registry(Path(env["STREAMS_MODELS_DIR"]))
    version = registry.champion_version(DEFAULT_NAME)
    if version is None and not train:
        print(
            f"fraud model: the online scorer decides ({registry.root} has no champion; "
            "--train-model trains one)"
        )
        return
    if version is None:
        print(f"training a fraud champion on {DEMO_HISTORY_DAYS} days of simulated history ...")
        history = registry.root.parent / "demo-history.parquet"
        registry.root.mkdir(parents=True, exist_ok=True)
        write_labelled_file(
            history,
            DEMO_HISTORY_DAYS,
            args.users,
            args.merchants,
            args.seed + 1,
            True,
            datetime(2026, 1, 5, tzinfo=UTC),
        )
        evaluation = evaluate(load(history), Protocol(), online=False)
        saved = registry.save(DEFAULT_NAME, evaluation.champion, evaluation.champion_metadata())
        version = saved.version
        metrics = saved.metadata.get("metrics", {})
        shown = ", ".join(
            f"{k} {metrics[k]:.3f}" for k in ("roc_auc", "average_precision") if k in metrics
        )
        print(f"registered {DEFAULT_NAME} v{version} in {registry.root} (test week: {shown})")
    print(f"fraud model: {DEFAULT_NAME} v{version} (the registry's champion) decides")


def cmd_demo(args: argparse.Namespace) -> int:
    env = stack_env(bring_up=True)
    _ensure_champion(env, args, train=args.train_model)
    supervisor = _start_services(env, None)
    watching = threading.Event()
    supervisor.watch(watching)  # restarts a service that exits while the demo runs
    code = 0
    try:
        print(f"services up; simulating {args.tps} transactions/s for {args.seconds}s")
        _simulate(env, args)
        print("\nledger verify:")
        from walletpipe.ledger_cli import verify_books

        code = verify_books(env)
        import time

        time.sleep(2)  # the analytics sink flushes about once a second
        print("\nanalytics (ClickHouse) volume by event:")
        for row in _report(env, "volume")["rows"]:
            print(
                f"  {row['event_kind']:>20} {row['transaction_type']:>10} "
                f"{row['events']:>7} events  {row['amount']:>14} {row['currency_code']}"
            )
        print(
            "accept→complete latency (ClickHouse):",
            {k: v for k, v in _report(env, "latency").items() if k not in ("from", "to")},
        )
    finally:
        print("stopping services ...")
        watching.set()
        supervisor.stop()
        if not args.keep:
            from infra import stack

            stack.down(local_dir())
            print("stack is down (walletpipe up / run start it again)")
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="walletpipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "up", help="start PostgreSQL and Kafka, apply migrations, write stack.env"
    ).set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop everything `up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="what runs where").set_defaults(func=cmd_status)
    run = sub.add_parser("run", help="run all services in the foreground (Ctrl-C stops)")
    run.add_argument(
        "--only", help="comma-separated: ingest,streams,ledger,gateway,notifications,analytics"
    )
    run.set_defaults(func=cmd_run)

    def traffic_options(p: argparse.ArgumentParser, tps: int, seconds: int) -> None:
        p.add_argument("--tps", type=int, default=tps, help="transactions per second")
        p.add_argument("--seconds", type=int, default=seconds)
        p.add_argument("--users", type=int, default=100)
        p.add_argument("--merchants", type=int, default=8)
        p.add_argument("--seed", type=int, default=7)
        p.add_argument(
            "--fraud",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="fraud scenarios in the traffic (default on; --no-fraud: normal behaviour only)",
        )
        p.add_argument(
            "--label-delay-s",
            type=float,
            default=5.0,
            help="live: a legitimate transaction's label comes this long after it (the 7-day "
            "dispute window scaled down); frauds are reported sooner",
        )
        p.add_argument("--no-labels", action="store_true", help="live: publish no labels")
        p.add_argument(
            "--report-json", help="live: write the detection report (per scenario) as JSON here"
        )

    simulate = sub.add_parser(
        "simulate", help="drive POS and app traffic with fraud through the API, or write it"
    )
    traffic_options(simulate, 50, 20)
    simulate.add_argument(
        "--out", help="write a labelled .csv or .parquet instead of sending (no stack needed)"
    )
    simulate.add_argument("--days", type=int, default=28, help="with --out: days of traffic")
    simulate.add_argument(
        "--start", default="2026-01-05", help="with --out: first day (ISO date, UTC)"
    )
    simulate.set_defaults(func=cmd_simulate)
    demo = sub.add_parser("demo", help="up + run + simulate + verify + reports, then stop")
    traffic_options(demo, 100, 20)
    demo.add_argument("--keep", action="store_true", help="leave the stack up afterwards")
    demo.add_argument(
        "--train-model",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="train a fraud champion on simulated history first if the registry has none",
    )
    demo.set_defaults(func=cmd_demo)
    from walletpipe.dlq import add_commands as add_dlq_commands
    from walletpipe.keys import add_command as add_keys_command
    from walletpipe.ledger_cli import add_commands as add_ledger_commands

    add_ledger_commands(sub, stack_env)
    add_dlq_commands(sub, stack_env)
    add_keys_command(sub, stack_env)
    from walletpipe.webhooks import add_command as add_webhooks_command

    add_webhooks_command(sub, stack_env)
    from analytics.cli import add_commands as add_reports_commands

    add_reports_commands(sub, stack_env, local_dir)
    from models.cli import register as add_models_commands
    from walletpipe.backtest import add_command as add_backtest_command

    add_backtest_command(add_models_commands(sub), backtest_env, backtest_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

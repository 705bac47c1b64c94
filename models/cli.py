"""``walletpipe models ...``: make data, evaluate, train and manage versioned artifacts."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

DEFAULT_NAME = "fraud"
#: As ``models.thresholds``' (not imported at start: the CLI loads numpy only when needed).
DEFAULT_REVIEW_BUDGET = 0.02
DEFAULT_DECLINE_PRECISION = 0.9
#: Exit status of a command refused for bad input (a file, an artifact, an option).
EXIT_REFUSED = 2


def _refusing(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input ends the command with one line naming the problem, not a traceback."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from models.exceptions import ModelsError

        try:
            return command(args)
        except ModelsError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_REFUSED

    return run


def registry_root() -> Path:
    return Path(os.environ.get("WALLETPIPE_MODELS_DIR", ".local/models")).resolve()


def _protocol(args: argparse.Namespace):  # noqa: ANN202
    from models.evaluation import Protocol
    from models.exceptions import DatasetError

    start = None
    if args.train_start:
        try:
            start = (date.fromisoformat(args.train_start) - date(1970, 1, 1)).days
        except ValueError:
            raise DatasetError(f"--train-start {args.train_start!r}: give YYYY-MM-DD") from None
    return Protocol(
        start,
        args.train_days,
        args.delay_days,
        args.test_days,
        args.seed,
        args.review_budget,
        args.decline_precision,
    )


def cmd_handbook(args: argparse.Namespace) -> int:
    from models.dataset import write
    from models.handbook import HandbookConfig, generate

    frame = generate(
        HandbookConfig(
            customers=args.customers, terminals=args.terminals, days=args.days, seed=args.seed
        )
    )
    out = write(frame, Path(args.out))
    print(f"wrote {len(frame):,} transactions ({frame['label'].mean():.2%} fraud) to {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from models.dataset import load
    from models.evaluation import evaluate, format_table, write_report

    evaluation = evaluate(load(Path(args.data)), _protocol(args), online=not args.no_online)
    print(format_table(evaluation.table))
    print(f"champion {evaluation.thresholds.describe()}")
    for path in write_report(evaluation, Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from models.dataset import load
    from models.evaluation import evaluate, format_table
    from models.registry import Registry

    evaluation = evaluate(load(Path(args.data)), _protocol(args), online=False)
    print(format_table(evaluation.table))
    print(f"champion {evaluation.thresholds.describe()}")
    registry = Registry(registry_root())
    artifact = registry.save(args.name, evaluation.champion, evaluation.champion_metadata())
    champion = registry.champion_version(args.name)
    print(f"registered {args.name} v{artifact.version} in {registry.root} (champion: v{champion})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from models.exceptions import ArtifactError
    from models.registry import Registry

    registry = Registry(registry_root())
    champion = registry.champion_version(args.name)
    challengers = registry.challengers(args.name)
    for version in registry.versions(args.name):
        role = "champion" if version == champion else "challenger" if version in challengers else ""
        try:
            metrics = registry.load(args.name, version).metadata.get("metrics", {})
            summary = (
                f"AP {metrics.get('average_precision', float('nan')):.3f} "
                f"CP@100 {metrics.get('card_precision_at_100', float('nan')):.3f}"
            )
        except ArtifactError as error:
            summary = f"UNUSABLE: {error}"
        print(f"v{version:<4} {role:<10} {summary}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from models.registry import Registry

    Registry(registry_root()).promote(args.name, args.version)
    print(f"{args.name} v{args.version} is the champion")
    return 0


def cmd_challengers(args: argparse.Namespace) -> int:
    from models.registry import Registry

    Registry(registry_root()).set_challengers(args.name, args.versions)
    print(f"{args.name} challengers: {', '.join(f'v{v}' for v in args.versions) or 'none'}")
    return 0


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``models`` group; returns its subparsers (walletpipe adds ``backtest``)."""
    models = sub.add_parser("models", help="fraud models: data, evaluate, train, registry")
    commands = models.add_subparsers(dest="models_command", required=True)

    handbook = commands.add_parser("handbook", help="write the Handbook's 3-scenario dataset")
    handbook.add_argument("--out", required=True, help=".parquet or .csv")
    handbook.add_argument("--days", type=int, default=136)
    handbook.add_argument("--customers", type=int, default=5_000)
    handbook.add_argument("--terminals", type=int, default=10_000)
    handbook.add_argument("--seed", type=int, default=0)
    handbook.set_defaults(func=_refusing(cmd_handbook))

    def protocol_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, help="labelled .csv or .parquet (see docs)")
        p.add_argument("--train-start", help="YYYY-MM-DD; default: the latest that fits")
        p.add_argument("--train-days", type=int, default=7)
        p.add_argument("--delay-days", type=int, default=7)
        p.add_argument("--test-days", type=int, default=7)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--review-budget",
            type=float,
            default=DEFAULT_REVIEW_BUDGET,
            help="the champion's thresholds hold at most this share of traffic for review",
        )
        p.add_argument(
            "--decline-precision",
            type=float,
            default=DEFAULT_DECLINE_PRECISION,
            help="... and decline only where at least this share of the declined is fraud",
        )

    evaluate = commands.add_parser("evaluate", help="train / delay / test report with plots")
    protocol_options(evaluate)
    evaluate.add_argument("--out", default=".local/evaluation", help="report folder")
    evaluate.add_argument("--no-online", action="store_true", help="skip the river models")
    evaluate.set_defaults(func=_refusing(cmd_evaluate))

    train = commands.add_parser("train", help="train the champion model and register it")
    protocol_options(train)
    train.add_argument("--name", default=DEFAULT_NAME)
    train.set_defaults(func=_refusing(cmd_train))

    listing = commands.add_parser("list", help="registered versions and their metrics")
    listing.add_argument("--name", default=DEFAULT_NAME)
    listing.set_defaults(func=_refusing(cmd_list))

    promote = commands.add_parser("promote", help="make a version the champion")
    promote.add_argument("version", type=int)
    promote.add_argument("--name", default=DEFAULT_NAME)
    promote.set_defaults(func=_refusing(cmd_promote))

    challengers = commands.add_parser("challengers", help="set the versions scored in shadow")
    challengers.add_argument("versions", type=int, nargs="*")
    challengers.add_argument("--name", default=DEFAULT_NAME)
    challengers.set_defaults(func=_refusing(cmd_challengers))
    return commands

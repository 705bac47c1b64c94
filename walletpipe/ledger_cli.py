"""``walletpipe ledger verify|reconcile``: the books balance, and every accepted request has
its one outcome. Connection settings come from the stack's settings (``stack_env``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from domain.shards import split_database_urls


def verify_books(env: dict[str, str], reconcile_args: argparse.Namespace | None = None) -> int:
    """Print every check (and the reconciliation, with ``reconcile_args``); exit code."""
    urls = split_database_urls(env.get("LEDGER_DATABASE_URLS", ""))
    failed = ledger_verify(urls) if len(urls) > 1 else ledger_verify([env["DATABASE_URL"]])
    if reconcile_args is not None:
        print("\naccepted requests:")
        failed += 0 if ledger_reconcile(env, reconcile_args) else 1
    print(
        "ledger verified: the books balance"
        if not failed
        else f"ledger verify FAILED: {failed} check(s)"
    )
    return 1 if failed else 0


def ledger_reconcile(env: dict[str, str], args: argparse.Namespace) -> bool:
    """Print the reconciliation of accepted requests with the ledger; True if it passed."""
    from ledger_writer.reconcile import format_report, reconcile

    since = None
    if args.since:
        since = datetime.fromisoformat(args.since)
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    report = reconcile(
        env["DATABASE_URL"],
        split_database_urls(env.get("LEDGER_DATABASE_URLS", "")) or None,
        deadline=timedelta(seconds=args.deadline_s),
        since=since,
    )
    print("\n".join(format_report(report)))
    print(json.dumps(report.as_dict()))
    return report.passed


def _print_checks(results: list, indent: str = "") -> int:
    for result in results:
        mark = "ok  " if result.passed else "FAIL"
        print(f"{indent}{mark} {result.name}")
        for offender in result.offenders:
            print(f"{indent}       {offender}")
    return sum(1 for r in results if not r.passed)


def ledger_verify(urls: list[str]) -> int:
    """Print every check (per shard, then across shards); return how many failed."""
    from ledger_writer.verify import summary, verify
    from ledger_writer.verify_shards import verify_shards

    if len(urls) == 1:
        failed = _print_checks(verify(urls[0]))
        print(json.dumps(summary(urls[0]), default=str))
        return failed
    report = verify_shards(urls)
    failed = 0
    for shard, (url, results) in enumerate(zip(urls, report.shards, strict=True)):
        print(f"shard {shard}: {json.dumps(summary(url), default=str)}")
        failed += _print_checks(results, "  ")
    print(f"across {len(urls)} shards:")
    failed += _print_checks(report.overall, "  ")
    if report.in_flight:
        for f in report.in_flight:
            print(
                f"  in flight shard {f.from_shard} -> {f.to_shard}: {f.count} credit(s), "
                f"{f.amount} {f.currency_code}"
            )
    else:
        print("  nothing in flight between shards: every pair's clearing accounts net to zero")
    return failed


def add_commands(sub: argparse._SubParsersAction, stack_env: Callable[[], dict[str, str]]) -> None:
    ledger = sub.add_parser("ledger", help="ledger tools").add_subparsers(
        dest="ledger_command", required=True
    )

    def reconcile_options(p: argparse.ArgumentParser) -> None:
        from ledger_writer.reconcile import DEADLINE_DEFAULT_S

        p.add_argument(
            "--deadline-s",
            type=float,
            default=DEADLINE_DEFAULT_S,
            help="a request without an outcome this long after it was accepted is stuck "
            f"(default {DEADLINE_DEFAULT_S:.0f}: the review timeout, 300 s, and the hold "
            "timeout, 30 s, with room)",
        )
        p.add_argument("--since", help="only requests accepted from then on (ISO time, UTC)")

    verify = ledger.add_parser("verify", help="check that the books balance")
    verify.add_argument(
        "--reconcile",
        action="store_true",
        help="also check every accepted request's outcome (as `ledger reconcile`)",
    )
    reconcile_options(verify)
    verify.set_defaults(
        func=lambda args: verify_books(stack_env(), args if args.reconcile else None)
    )
    reconcile = ledger.add_parser(
        "reconcile",
        help="every accepted request has exactly one outcome within its deadline; "
        "names the stuck, duplicated and late ones",
    )
    reconcile_options(reconcile)
    reconcile.set_defaults(func=lambda args: 0 if ledger_reconcile(stack_env(), args) else 1)

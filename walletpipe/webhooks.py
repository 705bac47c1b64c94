"""``walletpipe webhooks list|deliveries|redeliver``: webhook endpoints from the command line.

The CLI talks to PostgreSQL (DATABASE_URL of the stack) with the statements of the API's
``/v1/webhooks`` (ingest_api/webhook_store.py), as an operator: every client's endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

Env = Callable[[], dict[str, str]]


async def _with_connection(database_url: str, work: Callable[[Any], Any]) -> Any:
    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(
        database_url, autocommit=True, connect_timeout=10
    ) as conn:
        return await work(conn)


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _print_webhook(row: dict[str, Any]) -> None:
    print(
        f"{row['subscription_id']}  {row['status']:<7} {row['client_name']:<24} "
        f"pending {row['pending']:>6}  dead {row['dead']:>6}  {','.join(row['event_types'])}"
        f"  {row['url']}"
    )


def _print_delivery(row: dict[str, Any]) -> None:
    code = row["last_status_code"] if row["last_status_code"] is not None else "-"
    print(
        f"{row['delivery_id']:>10}  {row['status']:<9} {row['event_type']:<29} "
        f"attempts {row['attempts']:>3}  last {code!s:>3}  next {_when(row['next_attempt_at'])}"
        f"  event {row['event_id']}  {(row['last_error'] or '')[:80]}"
    )


def add_command(sub: Any, stack_env: Env) -> None:
    """The ``webhooks`` group of ``walletpipe`` (``sub`` is its top-level subparsers)."""
    from ingest_api import webhook_store

    parser = sub.add_parser("webhooks", help="webhook endpoints: list, deliveries, redeliver")
    group = parser.add_subparsers(dest="webhooks_command", required=True)

    def run(work: Callable[[Any], Any]) -> Any:
        return asyncio.run(_with_connection(stack_env()["DATABASE_URL"], work))

    def cmd_list(args: argparse.Namespace) -> int:
        client = uuid.UUID(args.client_id) if args.client_id else None
        rows = run(lambda conn: webhook_store.subscriptions(conn, client, args.deleted))
        for row in rows:
            print(json.dumps(row, default=str)) if args.json else _print_webhook(row)
        return 0

    def cmd_deliveries(args: argparse.Namespace) -> int:
        status = args.status.upper() if args.status else None
        rows = run(
            lambda conn: webhook_store.deliveries(
                conn, uuid.UUID(args.subscription_id), status, args.limit
            )
        )
        for row in rows:
            print(json.dumps(row, default=str)) if args.json else _print_delivery(row)
        return 0

    def cmd_redeliver(args: argparse.Namespace) -> int:
        ids = args.delivery if args.delivery else None
        if ids is None and not args.all_dead:
            print("name deliveries with --delivery ID, or send every dead one with --all-dead")
            return 2
        rows = run(lambda conn: webhook_store.redeliver(conn, uuid.UUID(args.subscription_id), ids))
        for row in rows:
            _print_delivery(row)
        print(f"{len(rows)} deliveries due again")
        return 0

    listing = group.add_parser("list", help="endpoints, with pending and dead deliveries")
    listing.add_argument("--client-id", help="one client's")
    listing.add_argument("--deleted", action="store_true", help="deleted ones too")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.set_defaults(func=cmd_list)

    deliveries = group.add_parser("deliveries", help="an endpoint's deliveries, newest first")
    deliveries.add_argument("subscription_id")
    deliveries.add_argument("--status", choices=["pending", "delivered", "dead"])
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.add_argument("--json", action="store_true", help="one JSON object a line")
    deliveries.set_defaults(func=cmd_deliveries)

    redeliver = group.add_parser(
        "redeliver", help="send deliveries again now, with a fresh retry window"
    )
    redeliver.add_argument("subscription_id")
    redeliver.add_argument("--delivery", type=int, action="append", help="repeatable")
    redeliver.add_argument("--all-dead", action="store_true", help="every dead delivery")
    redeliver.set_defaults(func=cmd_redeliver)

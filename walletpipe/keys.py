"""``walletpipe keys create|list|rotate|revoke``: API keys from the command line.

The CLI talks to PostgreSQL (DATABASE_URL of the stack) with the same statements as the
API's ``/v1/keys`` (ingest_api/key_store.py): an operator who can reach the database makes
the first admin key here. A new key is printed once, on stdout alone (so
``KEY=$(walletpipe keys create ...)`` works); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

Env = Callable[[], dict[str, str]]

ROLE_HELP = "customer_app, pos, partner, analyst, compliance, regulator, admin (repeatable)"


async def _with_connection(database_url: str, work: Callable[[Any], Any]) -> Any:
    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(
        database_url, autocommit=True, connect_timeout=10
    ) as conn:
        return await work(conn)


def _json(row: dict[str, Any]) -> str:
    return json.dumps(row, default=str)


def _print_key(row: dict[str, Any], file: Any = None) -> None:
    expires = row["expires_at"].isoformat() if row["expires_at"] else "never"
    print(
        f"{row['key_id']}  {row['status']:<8} {row['client_name']:<24} {row['key_prefix']:<11} "
        f"{','.join(row['roles']):<28} expires {expires}  {row['label']}",
        file=file or sys.stdout,
    )


def add_command(sub: Any, stack_env: Env) -> None:
    """The ``keys`` group of ``walletpipe`` (``sub`` is its top-level subparsers)."""
    from domain.access import parse_roles
    from domain.exceptions import AccessError
    from ingest_api import key_store

    parser = sub.add_parser("keys", help="API keys: create, list, rotate, revoke")
    group = parser.add_subparsers(dest="keys_command", required=True)

    def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
        def run(args: argparse.Namespace) -> int:
            try:
                return command(args)
            except AccessError as error:
                print(f"error: {error.code}: {error.message}", file=sys.stderr)
            except KeyCommandError as error:
                print(f"error: {error}", file=sys.stderr)
            return 1

        return run

    def run_create(args: argparse.Namespace) -> int:
        roles = parse_roles(r for given in args.role for r in given.split(","))
        expires_at = None
        if args.expires_in_days is not None:
            expires_at = datetime.now(UTC) + timedelta(days=args.expires_in_days)

        async def work(conn: Any) -> Any:
            issued = await key_store.issue(
                conn,
                client_name=args.client,
                roles=roles,
                label=args.label,
                expires_at=expires_at,
                client_rate_limit_per_second=args.client_rate_limit_per_second,
                rate_limit_per_second=args.rate_limit_per_second,
                rate_limit_burst=args.rate_limit_burst,
            )
            return issued, await key_store.key(conn, issued.key_id)

        issued, row = asyncio.run(_with_connection(stack_env()["DATABASE_URL"], work))
        print(issued.api_key)
        print("(shown once; stored as its sha256)", file=sys.stderr)
        _print_key(row, sys.stderr)
        return 0

    p = group.add_parser("create", help="issue a key (prints it once)")
    p.add_argument("--client", required=True, help="client name; a new name makes a client")
    p.add_argument("--role", action="append", required=True, help=ROLE_HELP)
    p.add_argument("--label", default="", help="what the key is for, e.g. 'terminal 12'")
    p.add_argument("--expires-in-days", type=float, default=None)
    p.add_argument("--rate-limit-per-second", type=int, default=None, help="the key's own")
    p.add_argument("--rate-limit-burst", type=int, default=None)
    p.add_argument("--client-rate-limit-per-second", type=int, default=100, help="for a new client")
    p.set_defaults(func=guarded(run_create))

    def run_list(args: argparse.Namespace) -> int:
        async def work(conn: Any) -> Any:
            client = None
            if args.client:
                client = await key_store.client_id_of(conn, args.client)
                if client is None:
                    raise KeyCommandError(f"no client named {args.client!r}")
            return await key_store.keys_of(conn, client)

        rows = asyncio.run(_with_connection(stack_env()["DATABASE_URL"], work))
        for row in rows:
            if args.json:
                print(_json(row))
            else:
                _print_key(row)
        return 0

    p = group.add_parser("list", help="keys (never the secrets), newest first")
    p.add_argument("--client", help="only this client's")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=guarded(run_list))

    def run_rotate(args: argparse.Namespace) -> int:
        async def work(conn: Any) -> Any:
            old = await key_store.key(conn, _key_id(args.key_id))
            if old is None:
                raise KeyCommandError(f"no key {args.key_id}")
            if old["status"] != "ACTIVE":
                raise KeyCommandError(f"key {args.key_id} is {old['status']}")
            issued, previous = await key_store.rotate(conn, old, grace_s=args.grace_seconds)
            return issued, previous

        issued, previous = asyncio.run(_with_connection(stack_env()["DATABASE_URL"], work))
        print(issued.api_key)
        print(
            f"(shown once) new key {issued.key_id}; the old one works until "
            f"{previous['expires_at'].isoformat()}",
            file=sys.stderr,
        )
        return 0

    p = group.add_parser("rotate", help="a new key like this one; the old one expires later")
    p.add_argument("key_id")
    p.add_argument("--grace-seconds", type=int, default=86_400, help="default one day")
    p.set_defaults(func=guarded(run_rotate))

    def run_revoke(args: argparse.Namespace) -> int:
        async def work(conn: Any) -> Any:
            return await key_store.revoke(conn, _key_id(args.key_id))

        row = asyncio.run(_with_connection(stack_env()["DATABASE_URL"], work))
        if row is None:
            raise KeyCommandError(f"no key {args.key_id}")
        _print_key(row)
        return 0

    p = group.add_parser("revoke", help="stop a key in every service within a second")
    p.add_argument("key_id")
    p.set_defaults(func=guarded(run_revoke))

    def run_limits(args: argparse.Namespace) -> int:
        for value in (args.per_second, args.burst):
            if value is not None and not 1 <= value <= 1_000_000:
                raise KeyCommandError("a limit is between 1 and 1,000,000")

        async def work(conn: Any) -> Any:
            if args.key:
                return await key_store.set_key_limits(
                    conn, _key_id(args.key), args.per_second, args.burst
                )
            if args.per_second is None:
                raise KeyCommandError("a client's limit needs --per-second")
            client = await key_store.client_id_of(conn, args.client)
            if client is None:
                raise KeyCommandError(f"no client named {args.client!r}")
            return await key_store.set_client_limits(conn, client, args.per_second, args.burst)

        done = asyncio.run(_with_connection(stack_env()["DATABASE_URL"], work))
        if not done:
            raise KeyCommandError(f"no key {args.key}")
        what = f"key {args.key}" if args.key else f"client {args.client!r}"
        rate = "the client's" if args.per_second is None else f"{args.per_second}/s"
        burst = "twice the rate" if args.burst is None else str(args.burst)
        print(f"{what}: {rate}, burst {burst} (in force within a second)")
        return 0

    p = group.add_parser("limits", help="change a client's or a key's rate limit")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--client", help="the client's limit, shared by its keys")
    target.add_argument("--key", help="one key's own limit (omit --per-second: the client's)")
    p.add_argument("--per-second", type=int, default=None)
    p.add_argument("--burst", type=int, default=None)
    p.set_defaults(func=guarded(run_limits))


class KeyCommandError(Exception):
    """A key command that cannot be done as asked; the message says why."""


def _key_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise KeyCommandError(f"{text!r} is not a key id (see `walletpipe keys list`)") from None

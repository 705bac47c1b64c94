"""``walletpipe reports ...``: reports through the analytics service's HTTP API, reporting
keys, and regulatory exports written to disk and verified.

The key for the API comes from ``--api-key`` or ``ANALYTICS_API_KEY``; without either, the
CLI registers a local admin key once (it can reach PostgreSQL through DATABASE_URL, so it
could anyway) and keeps it in ``<local dir>/reports-cli.key``, mode 0600.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analytics.auth import Role
from analytics.exceptions import AnalyticsError, ManifestInvalid

HTTP_TIMEOUT_S = 60
KEY_FILE = "reports-cli.key"
ANALYST_REPORTS = (
    "volume",
    "approval-rates",
    "latency",
    "fraud-rates",
    "fraud-scores",
    "decline-reasons",
    "model-scores",
)
REGULATORY_REPORTS = ("currency-transactions", "suspicious-activity")

Env = Callable[[], dict[str, str]]


class ReportRequestFailed(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        error = body.get("error", {})
        super().__init__(f"HTTP {status} {error.get('code')}: {error.get('message')}")
        self.status, self.body = status, body


def cli_key(env: dict[str, str], local_dir: Path, given: str | None = None) -> str:
    key = given or os.environ.get("ANALYTICS_API_KEY")
    if key:
        return key
    path = local_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip()
    from analytics.clients import create_api_key

    key = create_api_key(
        env["DATABASE_URL"], name=f"walletpipe-cli-{secrets.token_hex(3)}", role=Role.ADMIN
    )
    local_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def get(env: dict[str, str], key: str, path: str, params: dict[str, Any] | None = None) -> dict:
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
    url = f"{env['ANALYTICS_URL']}/v1/reports/{path}" + (f"?{query}" if query else "")
    request = urllib.request.Request(url, headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read())
        except ValueError:
            body = {"error": {"code": f"HTTP_{error.code}", "message": error.reason}}
        raise ReportRequestFailed(error.code, body) from None


def write_export(answer: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(answer["files"].items()):
        if Path(name).name != name:
            raise AnalyticsError(f"refusing a file name with a path: {name!r}")
        target = out / name
        target.write_bytes(text.encode())
        written.append(target)
    return written


def verify_export(manifest_path: Path, key: bytes) -> dict[str, Any]:
    from analytics import export

    folder = manifest_path.parent
    manifest_bytes = manifest_path.read_bytes()
    try:
        listed = [entry["name"] for entry in json.loads(manifest_bytes)["files"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ManifestInvalid(f"{manifest_path} is not an export manifest: {error}") from None
    files = {name: (folder / name).read_bytes() for name in listed if (folder / name).exists()}
    return export.verify(manifest_bytes, files, key)


def _signing_key(env: dict[str, str], key_file: Path | None) -> bytes:
    if key_file is not None:
        return key_file.read_text().strip().encode()
    from analytics import export
    from analytics.settings import AnalyticsSettings

    settings = AnalyticsSettings(**{k: v for k, v in env.items() if k.isupper()})  # type: ignore[arg-type]
    return export.signing_key(settings)


def add_commands(sub: Any, stack_env: Env, local_dir: Callable[[], Path]) -> None:
    """The ``reports`` group of ``walletpipe`` (``sub`` is its top-level subparsers)."""
    parser = sub.add_parser("reports", help="reports, keys and regulatory exports")
    group = parser.add_subparsers(dest="reports_command", required=True)

    def run_report(args: argparse.Namespace) -> int:
        env = stack_env()
        path = args.report if args.report in ANALYST_REPORTS else f"regulatory/{args.report}"
        params = {"from": args.start, "to": args.end}
        if args.report in ANALYST_REPORTS[:4]:  # the ones with buckets
            params["granularity"] = args.granularity
        answer = get(env, cli_key(env, local_dir(), args.api_key), path, params)
        print(json.dumps(answer, indent=2))
        return 0

    for name in (*ANALYST_REPORTS, *REGULATORY_REPORTS):
        p = group.add_parser(name, help=f"the {name} report (JSON)")
        p.add_argument("--from", dest="start", help="ISO-8601 with a zone; default: a day ago")
        p.add_argument("--to", dest="end", help="ISO-8601 with a zone; default: now")
        p.add_argument("--granularity", choices=("minute", "hour", "day"), default="hour")
        p.add_argument("--api-key", help="default: ANALYTICS_API_KEY, else a local admin key")
        p.set_defaults(func=_guarded(run_report), report=name)

    def run_export(args: argparse.Namespace) -> int:
        env = stack_env()
        key = cli_key(env, local_dir(), args.api_key)
        answer = get(env, key, "regulatory/export", {"period": args.period})
        out = Path(args.out) if args.out else local_dir() / "regulatory" / args.period
        for path in write_export(answer, out):
            print(path)
        counts = json.loads(answer["files"][answer["manifest"]])["report_counts"]
        print("reports:", json.dumps(counts))
        return 0

    p = group.add_parser("export", help="a period's regulatory reports: CSV, JSON, manifest")
    p.add_argument("--period", required=True, help="a business day 2026-01-31 or month 2026-01")
    p.add_argument("--out", help="folder; default: <local dir>/regulatory/<period>")
    p.add_argument("--api-key", help="a regulator (or admin) key")
    p.set_defaults(func=_guarded(run_export))

    def run_verify(args: argparse.Namespace) -> int:
        key = _signing_key(stack_env(), Path(args.key_file) if args.key_file else None)
        manifest = verify_export(Path(args.manifest), key)
        print(f"ok: signature and {len(manifest['files'])} file(s) match ({manifest['period']})")
        return 0

    p = group.add_parser("verify-export", help="check an export's signature and files")
    p.add_argument("manifest", help="the *.manifest.json file")
    p.add_argument("--key-file", help="default: REGULATORY_SIGNING_KEY or the service's key")
    p.set_defaults(func=_guarded(run_verify))

    def run_create_key(args: argparse.Namespace) -> int:
        from analytics.clients import create_api_key

        key = create_api_key(stack_env()["DATABASE_URL"], name=args.name, role=Role(args.role))
        print(key)
        print(f"(shown once; {args.role} key {args.name!r} stored as its sha256)", file=sys.stderr)
        return 0

    p = group.add_parser(
        "create-key", help="a reporting key (see also `walletpipe keys`); prints it once"
    )
    p.add_argument("--role", required=True, choices=("analyst", "compliance", "regulator", "admin"))
    p.add_argument("--name", required=True)
    p.set_defaults(func=_guarded(run_create_key))


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Known failures print one line and exit 1, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ReportRequestFailed as error:
            print(f"error: {error}", file=sys.stderr)
        except AnalyticsError as error:
            print(f"error: {error.code}: {error.message}", file=sys.stderr)
        except (urllib.error.URLError, OSError) as error:
            print(f"error: {error} (is the analytics service running?)", file=sys.stderr)
        return 1

    return run


def report(env: dict[str, str], local_dir: Path, name: str) -> dict[str, Any]:
    """One analyst report's totals over the last day, for ``walletpipe demo`` (the
    per-bucket ``series`` left out: a summary is printed)."""
    answer = get(env, cli_key(env, local_dir), name, {"granularity": "hour"})
    return {k: v for k, v in answer.items() if k not in ("series", "granularity")}

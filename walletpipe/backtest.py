"""``walletpipe models backtest --policy FILE --from T1 --to T2``: what a policy would have
done to past transactions, beside the policy in force, before it ships.

History comes from ClickHouse: through the analytics service's API while it runs (it owns
the embedded engine), else by opening the engine (``CLICKHOUSE_URL`` or the chDB path)
directly. Features are recomputed with the stream's code (``streams.replay``) from a
warm-up stretch before T1; scores are the recorded ones. Labels come from ClickHouse if a
labels table is there, and from ``--labels FILE`` (which wins).

Exit codes: 0 done; 1 the history could not be read; 2 bad input (policy or labels file,
range), nothing read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
WARMUP_DAYS_DEFAULT = 7
WARMUP_DAYS_MAX = 31
RANGE_DAYS_MAX = 366
LABELS_BYTES_MAX = 512 * 1024 * 1024
HEALTH_TIMEOUT_S = 2.0


class BadInput(Exception):
    """The command was given something it cannot use; the message says what."""


class ReadFailed(Exception):
    """The history could not be read; the message says where and why."""


def parse_time(text: str, option: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"{option} {text!r} is not an ISO-8601 time (2026-01-31T00:00Z)") from None
    if at.tzinfo is None:
        raise BadInput(f"{option} {text!r} needs a timezone, e.g. {text}Z")
    return at.astimezone(UTC)


def check_range(start: datetime, end: datetime, warmup_days: int) -> None:
    if start >= end:
        raise BadInput(f"--from {start.isoformat()} must be before --to {end.isoformat()}")
    if end - start > timedelta(days=RANGE_DAYS_MAX):
        raise BadInput(f"the range spans {(end - start).days} days; at most {RANGE_DAYS_MAX}")
    if not 0 <= warmup_days <= WARMUP_DAYS_MAX:
        raise BadInput(f"--warmup-days must be from 0 to {WARMUP_DAYS_MAX}")


def load_policies(args: argparse.Namespace, env: dict[str, str]) -> tuple[Any, Any, str]:
    """The candidate, and the baseline: ``--baseline`` or the stream's policy in force
    (STREAMS_POLICY_FILE, else its thresholds)."""
    from pydantic import ValidationError

    from models.exceptions import PolicyError
    from models.policy import default_policy
    from streams.decision import FEATURE_NAMES
    from streams.policy_watch import read_policy_file
    from streams.settings import StreamSettings

    try:
        candidate = read_policy_file(Path(args.policy), FEATURE_NAMES)
        if args.baseline:
            return candidate, read_policy_file(Path(args.baseline), FEATURE_NAMES), "baseline"
        settings = StreamSettings(kafka_bootstrap=env.get("KAFKA_BOOTSTRAP", "unused"))
        if settings.policy_file is not None:
            return candidate, read_policy_file(settings.policy_file, FEATURE_NAMES), "in force"
        models_dir = env.get("STREAMS_MODELS_DIR") or settings.models_dir
        chosen = champion_thresholds(
            None if models_dir is None else Path(models_dir), settings.model_name
        )
        if chosen is not None:
            review_at, decline_at, name = chosen
            print(
                f"in force: {name}'s thresholds, chosen on its validation scores: review from "
                f"{review_at * 100:.2f}, decline from {decline_at * 100:.2f}"
            )
            return candidate, default_policy(review_at, decline_at), f"{name} thresholds"
        fallback = default_policy(settings.review_threshold, settings.decline_threshold)
    except (PolicyError, ValidationError) as error:
        raise BadInput(str(error)) from None
    return candidate, fallback, "in force"


def champion_thresholds(root: Path | None, name: str) -> tuple[float, float, str] | None:
    """The registry champion's (review, decline) thresholds, as the stream uses them when
    no policy file is set; None without a registry, a champion, or thresholds in it."""
    from models.exceptions import ArtifactError
    from models.registry import Registry

    if root is None:
        return None
    registry = Registry(root)
    try:
        version = registry.champion_version(name)
        if version is None:
            return None
        chosen = registry.load(name, version).metadata.get("thresholds") or {}
    except (ArtifactError, OSError):
        return None
    if "review_at" not in chosen or "decline_at" not in chosen:
        return None
    decline_at = min(float(chosen["decline_at"]), 1.0)
    return min(float(chosen["review_at"]), decline_at), decline_at, f"{name} v{version}"


def load_labels(path: str | None) -> dict[uuid.UUID, bool]:
    from models.backtest import parse_labels
    from models.exceptions import DatasetError

    if path is None:
        return {}
    try:
        if os.path.getsize(path) > LABELS_BYTES_MAX:
            raise BadInput(f"{path} is larger than {LABELS_BYTES_MAX // 2**20} MiB")
        return parse_labels(Path(path).read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput(f"cannot read the labels file {path}: {error}") from None
    except DatasetError as error:
        raise BadInput(str(error)) from None


def service_running(env: dict[str, str]) -> bool:
    url = env.get("ANALYTICS_URL")
    if not url:
        return False
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=HEALTH_TIMEOUT_S) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def read_through_api(
    env: dict[str, str], key: str, start: datetime, end: datetime
) -> tuple[list[tuple], dict[uuid.UUID, bool] | None]:
    from analytics.cli import ReportRequestFailed, get

    try:
        answer = get(
            env, key, "backtest/history", {"from": start.isoformat(), "to": end.isoformat()}
        )
    except ReportRequestFailed as error:
        raise ReadFailed(f"the analytics service refused: {error}") from None
    except (urllib.error.URLError, OSError) as error:
        raise ReadFailed(f"the analytics service at {env.get('ANALYTICS_URL')}: {error}") from None
    rows = [tuple(row) for row in answer["rows"]]
    labels = answer.get("labels")
    return rows, None if labels is None else {uuid.UUID(k): bool(v) for k, v in labels.items()}


def read_engine(
    env: dict[str, str], start: datetime, end: datetime
) -> tuple[list[tuple], dict[uuid.UUID, bool] | None]:
    from analytics import history
    from analytics.clickhouse import Warehouse
    from analytics.exceptions import TooMuchData
    from analytics.settings import AnalyticsSettings

    target = env.get("CLICKHOUSE_URL") or env.get("CLICKHOUSE_DSN")
    if not target:
        raise ReadFailed("no CLICKHOUSE_DSN or CLICKHOUSE_URL (run `walletpipe up` first)")
    rows_max = AnalyticsSettings.model_fields["backtest_rows_max"].default
    rows_max = int(env.get("BACKTEST_ROWS_MAX", rows_max))
    try:
        warehouse = Warehouse(target)
    except Exception as error:  # noqa: BLE001 - the engine's errors have no common class
        raise ReadFailed(
            f"cannot open ClickHouse at {target}: {error} (if the analytics service runs, "
            "set ANALYTICS_URL so the backtest goes through its API)"
        ) from None
    try:
        return history.decision_history(warehouse, start, end, rows_max), history.stored_labels(
            warehouse, start, end
        )
    except TooMuchData as error:
        raise ReadFailed(error.message) from None
    finally:
        warehouse.close()


def historical(rows: Iterable[tuple]) -> Iterable[Any]:
    """Rows in ``analytics.history.HISTORY_COLUMNS`` order (from the engine, or the API's
    text) as ``streams.replay.HistoricalRequest``."""
    from analytics.history import risk_score
    from streams.replay import HistoricalRequest

    def optional_id(value: Any) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(str(value))

    for row in rows:
        at = row[1] if isinstance(row[1], datetime) else datetime.fromisoformat(row[1])
        yield HistoricalRequest(
            transaction_id=uuid.UUID(str(row[0])),
            requested_at=at if at.tzinfo else at.replace(tzinfo=UTC),
            transaction_type=row[2],
            source_wallet_id=optional_id(row[3]),
            destination_wallet_id=optional_id(row[4]),
            amount=Decimal(str(row[5])),
            currency_code=row[6],
            channel=row[7] or "",
            decision=row[8] or "",
            risk_score=risk_score(row[9]),
            # An analytics service older than the terminal column answers ten columns.
            terminal_id=(row[10] or "") if len(row) > 10 else "",
        )


def run(args: argparse.Namespace, env: dict[str, str], api_key: Callable[[], str]) -> int:
    from models.backtest import Tally, format_comparison
    from streams.replay import replay

    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    check_range(start, end, args.warmup_days)
    candidate, baseline, baseline_role = load_policies(args, env)
    file_labels = load_labels(args.labels)
    fetch_from = start - timedelta(days=args.warmup_days)
    source = args.source
    if source == "auto":
        source = "api" if service_running(env) else "engine"
    if source == "api":
        try:
            key = api_key()
        except KeyError as error:
            raise ReadFailed(
                f"no ANALYTICS_API_KEY, and no {error} to register a reporting key with"
            ) from None
        rows, stored = read_through_api(env, key, fetch_from, end)
    else:
        rows, stored = read_engine(env, fetch_from, end)
    labels = {**(stored or {}), **file_labels}
    tallies = (Tally(), Tally())
    for replayed in replay(historical(rows), (candidate, baseline), start, labels=labels):
        request = replayed.request
        label = labels.get(request.transaction_id)
        for tally, verdict in zip(tallies, replayed.verdicts, strict=True):
            tally.add(verdict, request.amount, request.currency_code, label)
    names = (f"candidate v{candidate.version}", f"{baseline_role} v{baseline.version}")
    if args.json:
        print(
            json.dumps(
                {
                    "from": start.isoformat(),
                    "to": end.isoformat(),
                    "source": source,
                    "candidate": {"version": candidate.version, **tallies[0].as_dict()},
                    "baseline": {"version": baseline.version, **tallies[1].as_dict()},
                },
                indent=2,
            )
        )
        return EXIT_OK
    print(
        f"backtest {start.isoformat()} .. {end.isoformat()} ({args.warmup_days} d warm-up, "
        f"history from the {'analytics API' if source == 'api' else 'engine'})"
    )
    print(format_comparison(tallies[0], tallies[1], names))
    return EXIT_OK


def add_command(
    commands: Any, stack_env: Callable[[], dict[str, str]], api_key: Callable[[dict], str]
) -> None:
    """``walletpipe models backtest`` (``commands`` is the models group's subparsers)."""
    p = commands.add_parser("backtest", help="replay a policy over ClickHouse history")
    p.add_argument("--policy", required=True, help="the candidate policy (JSON)")
    p.add_argument("--from", dest="start", required=True, help="ISO-8601 with a zone")
    p.add_argument("--to", dest="end", required=True, help="ISO-8601 with a zone (exclusive)")
    p.add_argument("--labels", help="CSV transaction_id,label (1/0); wins over stored labels")
    p.add_argument("--baseline", help="compare with this policy, not the one in force")
    p.add_argument("--warmup-days", type=int, default=WARMUP_DAYS_DEFAULT)
    p.add_argument("--source", choices=("auto", "api", "engine"), default="auto")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")

    def command(args: argparse.Namespace) -> int:
        try:
            env = stack_env()
            return run(args, env, lambda: api_key(env))
        except BadInput as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except ReadFailed as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED

    p.set_defaults(func=command)

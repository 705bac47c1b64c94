"""``walletpipe models backtest`` against a real chDB path: history written through the
analytics schema and mapping code, the command run as a process, every figure checked by
hand; and the bad inputs it refuses (exit 2) and the history it cannot read (exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from analytics.auth import Principal, Role
from analytics.clickhouse import Warehouse, events_batch
from analytics.history import decision_history
from analytics.mapping import event_row
from analytics.service import create_app
from analytics.settings import AnalyticsSettings
from domain import records
from domain.transactions import TransactionType as T
from walletpipe.backtest import historical

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
T1 = datetime(2026, 5, 4, 0, 0, tzinfo=UTC)
T2 = T1 + timedelta(days=1)
D = Decimal


def lifecycle(
    kind: T,
    amount: str,
    at: datetime,
    score: str,
    outcome: str,
    source: uuid.UUID | None,
    destination: uuid.UUID | None,
    reason: str = "FRAUD_DECLINED",
    terminal: str | None = None,
) -> tuple[uuid.UUID, list[Any]]:
    """The rows one request leaves: requested, then the stream's decision (and, after a
    review, the analyst's), as the sink maps them."""
    facts = {
        "transaction_id": uuid.uuid4(),
        "transaction_type": kind,
        "source_wallet_id": source,
        "destination_wallet_id": destination,
        "source_user_id": uuid.uuid4() if source else None,
        "destination_user_id": uuid.uuid4() if destination else None,
        "amount": D(amount),
        "fee_amount": D(0),
        "total_amount": D(amount),
        "currency_code": "USD",
        "client_id": uuid.uuid4(),
        "idempotency_key": uuid.uuid4().hex,
        "requested_at": at,
        "metadata": {"channel": "web", **({"terminal_id": terminal} if terminal else {})},
    }
    decided = at + timedelta(milliseconds=40)
    out: list[records.Record] = [records.TransactionRequested(**facts)]
    if outcome == "review":
        out.append(
            records.ReviewRequested(
                **facts,
                risk_score=D(score),
                decided_at=decided,
                review_deadline=decided + timedelta(minutes=5),
            )
        )
        out.append(  # the analyst approved it later: not the stream's decision
            records.PostTransaction(**facts, risk_score=D(score), decided_at=at + timedelta(1))
        )
    elif outcome == "rejected":
        out.append(
            records.TransactionRejected(
                **facts,
                reason_code=reason,
                reason_message="no",
                risk_score=D(score),
                decided_at=decided,
            )
        )
    else:
        out.append(records.PostTransaction(**facts, risk_score=D(score), decided_at=decided))
    return facts["transaction_id"], [event_row(r) for r in out]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One wallet with a habit of 10 USD spends before T1 (the warm-up), then in the range:

    - spike: 250 to a new payee, score 30 (customer_amount_ratio_30d 25, 4 spends before) —
      approved then
    - big: 2,000, score 70 — held for review then (and approved by an analyst later)
    - hot: 50, score 90 — declined then
    - small: 10, score 5 — approved
    - deposit: 5,000 into another wallet, score 1 — approved
    - broke: 20, score 62, rejected INSUFFICIENT_FUNDS (the policy decided review)
    - unscored: a request with no decision stored (not decided, not counted)
    and one request after T2 (outside the range).
    """
    home = tmp_path_factory.mktemp("backtest")
    wallet, shop, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rows: list[tuple[Any, ...]] = []
    ids: dict[str, uuid.UUID] = {}

    def add(name: str, *args: Any, **kwargs: Any) -> None:
        ids[name], new = lifecycle(*args, **kwargs)
        rows.extend(new)

    for i in range(4):  # the habit, in the warm-up
        add(
            f"habit{i}",
            T.PAYMENT,
            "10",
            T1 - timedelta(hours=10 - i),
            "1",
            "approved",
            wallet,
            shop,
        )
    add("spike", T.PAYMENT, "250", T1 + timedelta(hours=1), "30", "approved", wallet, uuid.uuid4())
    add("big", T.PAYMENT, "2000", T1 + timedelta(hours=2), "70", "review", wallet, shop)
    add("hot", T.PAYMENT, "50", T1 + timedelta(hours=3), "90", "rejected", wallet, shop)
    add("small", T.PAYMENT, "10", T1 + timedelta(hours=4), "5", "approved", wallet, shop)
    add("deposit", T.DEPOSIT, "5000", T1 + timedelta(hours=5), "1", "approved", None, other)
    add(
        "broke",
        T.PAYMENT,
        "20",
        T1 + timedelta(hours=6),
        "62",
        "rejected",
        other,
        shop,
        reason="INSUFFICIENT_FUNDS",
    )
    add("late", T.PAYMENT, "10", T2 + timedelta(minutes=1), "99", "rejected", wallet, shop)
    unscored, unscored_rows = lifecycle(
        T.PAYMENT, "10", T1 + timedelta(hours=7), "1", "approved", wallet, shop
    )
    rows.append(unscored_rows[0])  # the request only
    engine = home / "clickhouse"
    warehouse = Warehouse(f"chdb://{engine}")
    try:
        warehouse.insert_events(events_batch(rows).table)
        # a replayed batch: counted once all the same
        warehouse.insert_events(events_batch(rows[:3]).table)
    finally:
        warehouse.close()
    return {"home": home, "engine": engine, "ids": ids}


def write_policy(path: Path, version: int, review: int, decline: int, *rules: tuple) -> Path:
    body = {
        "version": version,
        "review_threshold": review,
        "decline_threshold": decline,
        "rules": [{"name": n, "when": w, "action": a} for n, w, a in rules],
    }
    path.write_text(json.dumps(body))
    return path


def backtest(history: dict[str, Any], *args: str, **env: str) -> subprocess.CompletedProcess:
    variables = {
        k: v for k, v in os.environ.items() if not k.startswith(("STREAMS_", "CLICKHOUSE_"))
    }
    variables.update(
        WALLETPIPE_LOCAL_DIR=str(history["home"] / "local"),  # no stack.env there
        CLICKHOUSE_DSN=f"chdb://{history['engine']}",
        ANALYTICS_URL="http://127.0.0.1:9",  # nothing listens: the engine is opened
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "walletpipe.cli", "models", "backtest", *args],
        capture_output=True,
        text=True,
        env=variables,
        cwd=REPO,
        timeout=120,
    )


def figures(history: dict[str, Any], *args: str, **env: str) -> dict[str, Any]:
    done = backtest(history, "--json", *args, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


RANGE = ("--from", T1.isoformat(), "--to", T2.isoformat())
#: 25 times the habit, to a new payee, after 4 earlier spends (the engine's 30-day count
#: includes the request itself).
SPIKE = "customer_amount_ratio_30d >= 20 and customer_nb_30d >= 5 and new_terminal == 1"


def test_backtest_replays_a_policy_over_stored_history(history: dict, tmp_path: Path) -> None:
    ids = history["ids"]
    policy = write_policy(
        tmp_path / "candidate.json",
        4,
        60,
        95,
        ("spike", SPIKE, "decline"),
        ("big", "amount >= 1000 and transaction_type == 'PAYMENT'", "decline"),
        ("deposits", "transaction_type == 'DEPOSIT'", "approve"),
    )
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "transaction_id,label\n"
        f"{ids['spike']},1\n{ids['big']},1\n{ids['hot']},0\n{ids['small']},0\n"
        f"{ids['deposit']},fraud\n{ids['broke']},0\n"
    )
    answer = figures(history, "--policy", str(policy), "--labels", str(labels), *RANGE)
    candidate, baseline = answer["candidate"], answer["baseline"]
    assert answer["source"] == "engine"  # nothing answers at ANALYTICS_URL
    # Six scored requests in the range (not the unscored one, nor the warm-up, nor 'late').
    # Candidate: spike, big declined by rules; hot 90 < 95 reviewed; broke 62 reviewed;
    # deposit approved by its rule; small approved.
    assert (candidate["decided"], candidate["decline"], candidate["review"]) == (6, 2, 2)
    assert candidate["approve"] == 2 and candidate["rules"] == {"spike": 1, "big": 1, "deposits": 1}
    assert (candidate["fraud"], candidate["fraud_declined"], candidate["fraud_approved"]) == (
        3,
        2,
        1,
    )
    assert (candidate["good_hurt"], candidate["good_reviewed"], candidate["good_declined"]) == (
        2,
        2,
        0,
    )
    assert candidate["money_saved"] == {"USD": "2250.0000"}
    assert candidate["decline_rate"] == pytest.approx(2 / 6)
    # Baseline: the stream's default thresholds (60 / 85): hot declined, big and broke
    # reviewed, the rest approved.
    assert baseline["version"] == 0
    assert (baseline["decline"], baseline["review"], baseline["approve"]) == (1, 2, 3)
    assert (baseline["fraud_declined"], baseline["fraud_reviewed"]) == (0, 1)
    assert baseline["good_hurt"] == 2 and baseline["good_declined"] == 1
    assert baseline["money_saved"] == {}


def test_features_need_the_warm_up(history: dict, tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path / "p.json",
        2,
        60,
        85,
        ("spike", SPIKE, "decline"),
    )
    warm = figures(history, "--policy", str(policy), *RANGE)
    cold = figures(history, "--policy", str(policy), "--warmup-days", "0", *RANGE)
    assert warm["candidate"]["rules"] == {"spike": 1}
    assert cold["candidate"]["rules"] == {}  # no history: the spike looks like a first spend


def test_the_table_compares_with_the_policy_in_force(history: dict, tmp_path: Path) -> None:
    candidate = write_policy(tmp_path / "c.json", 3, 50, 60)
    in_force = write_policy(tmp_path / "f.json", 2, 60, 85)
    done = backtest(history, "--policy", str(candidate), *RANGE, STREAMS_POLICY_FILE=str(in_force))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "candidate v3" in lines[1] and "in force v2" in lines[1]
    decline = next(line for line in lines if line.startswith("decline rate"))
    assert "50.00% (3)" in decline and "16.67% (1)" in decline and "+33.33 pp" in decline
    assert "no labels for these transactions" in done.stdout


def test_labels_stored_in_clickhouse_are_used(history: dict, tmp_path: Path) -> None:
    warehouse = Warehouse(f"chdb://{history['engine']}")
    try:
        warehouse.command(
            "CREATE TABLE IF NOT EXISTS fraud_labels (transaction_id UUID, is_fraud UInt8,"
            " labelled_at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY transaction_id"
        )
        hot = history["ids"]["hot"]
        warehouse.command(
            "INSERT INTO fraud_labels VALUES "
            f"('{hot}', 0, '2026-05-05 00:00:00'), ('{hot}', 1, '2026-05-06 00:00:00')"
        )
    finally:
        warehouse.close()
    policy = write_policy(tmp_path / "p.json", 2, 60, 85)
    answer = figures(history, "--policy", str(policy), *RANGE)["candidate"]
    assert (answer["labelled"], answer["fraud_declined"]) == (1, 1)  # the latest label wins
    assert answer["money_saved"] == {"USD": "50.0000"}
    labels = tmp_path / "labels.csv"
    labels.write_text(f"transaction_id,label\n{hot},0\n")  # the file wins
    answer = figures(history, "--policy", str(policy), "--labels", str(labels), *RANGE)
    assert (answer["candidate"]["fraud"], answer["candidate"]["good_declined"]) == (0, 1)


def test_terminal_frauds_reach_the_replay_a_label_delay_later(tmp_path: Path) -> None:
    """The history carries each request's terminal, and a labelled fraud there counts in
    the terminal's risk once the label delay (7 days) has passed, as in training."""
    home, terminal = tmp_path, "pos-0042"
    engine = home / "clickhouse"
    rows: list[Any] = []
    ids = []
    for amount, at, where in (
        ("80", T1 - timedelta(days=9), terminal),  # the fraud, labelled below
        ("30", T1 + timedelta(hours=2), terminal),
        ("30", T1 + timedelta(hours=3), "pos-0001"),
    ):
        paid = lifecycle(
            T.PAYMENT, amount, at, "10", "approved", uuid.uuid4(), None, terminal=where
        )
        ids.append(paid[0])
        rows += paid[1]
    fraud, later, elsewhere = ids
    warehouse = Warehouse(f"chdb://{engine}")
    try:
        warehouse.insert_events(events_batch(rows).table)
        stored = decision_history(warehouse, T1 - timedelta(days=10), T2, 100)
    finally:
        warehouse.close()
    assert [r.terminal_id for r in historical(stored)] == [terminal, terminal, "pos-0001"]
    policy = write_policy(
        tmp_path / "p.json", 5, 60, 85, ("bad-terminal", "terminal_frauds_30d >= 1", "decline")
    )
    labels = tmp_path / "labels.csv"
    labels.write_text(f"transaction_id,label\n{fraud},1\n{later},0\n{elsewhere},0\n")
    place = {"home": home, "engine": engine}
    args = ("--policy", str(policy), "--warmup-days", "10", *RANGE)
    answer = figures(place, *args, "--labels", str(labels))["candidate"]
    assert answer["rules"] == {"bad-terminal": 1} and answer["good_declined"] == 1
    assert figures(place, *args)["candidate"]["rules"] == {}  # no labels: a clean terminal


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--from", "2026-05-05T00:00Z", "--to", "2026-05-04T00:00Z"), "must be before --to"),
        (("--from", "2026-05-04T00:00Z", "--to", "2026-05-04T00:00Z"), "must be before --to"),
        (("--from", "2020-01-01T00:00Z", "--to", "2026-05-04T00:00Z"), "at most 366"),
        (("--from", "2026-05-04T00:00", "--to", "2026-05-05T00:00Z"), "needs a timezone"),
        (("--from", "yesterday", "--to", "2026-05-05T00:00Z"), "is not an ISO-8601 time"),
        ((*RANGE, "--warmup-days", "99"), "--warmup-days must be from 0 to 31"),
    ],
)
def test_bad_ranges_exit_2(history: dict, tmp_path: Path, args: tuple, says: str) -> None:
    policy = write_policy(tmp_path / "p.json", 1, 60, 85)
    done = backtest(history, "--policy", str(policy), *args)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_bad_policy_and_labels_files_exit_2(history: dict, tmp_path: Path) -> None:
    bad = write_policy(tmp_path / "bad.json", 1, 60, 85, ("evil", "__import__('os')", "approve"))
    done = backtest(history, "--policy", str(bad), *RANGE)
    assert done.returncode == 2
    assert "rule #1 'evil': 'when' at column 11: calls are not part of the language" in done.stderr
    done = backtest(history, "--policy", str(tmp_path / "missing.json"), *RANGE)
    assert done.returncode == 2 and "cannot read the policy file" in done.stderr
    good = write_policy(tmp_path / "good.json", 1, 60, 85)
    labels = tmp_path / "labels.csv"
    labels.write_text("transaction_id,label\nnot-a-uuid,1\n")
    done = backtest(history, "--policy", str(good), "--labels", str(labels), *RANGE)
    assert (
        done.returncode == 2 and "line 2: transaction_id 'not-a-uuid' is not a UUID" in done.stderr
    )
    labels.write_text(f"transaction_id,label\n{uuid.uuid4()},maybe\n")
    done = backtest(history, "--policy", str(good), "--labels", str(labels), *RANGE)
    assert done.returncode == 2 and "label 'maybe' is not 1/0" in done.stderr
    labels.write_text("id,fraud\n")
    done = backtest(history, "--policy", str(good), "--labels", str(labels), *RANGE)
    assert done.returncode == 2 and "must name transaction_id and label" in done.stderr
    broken_in_force = tmp_path / "in-force.json"
    broken_in_force.write_text("{")
    done = backtest(
        history, "--policy", str(good), *RANGE, STREAMS_POLICY_FILE=str(broken_in_force)
    )
    assert done.returncode == 2 and "the policy is not JSON" in done.stderr


def test_unreadable_history_exits_1(history: dict, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "p.json", 1, 60, 85)
    done = backtest(history, "--policy", str(policy), *RANGE, "--source", "api")
    assert done.returncode == 1 and "DATABASE_URL" in done.stderr  # no key, none to be made
    done = backtest(
        history, "--policy", str(policy), *RANGE, "--source", "api", ANALYTICS_API_KEY="k"
    )
    assert done.returncode == 1 and "the analytics service" in done.stderr
    done = backtest(history, "--policy", str(policy), *RANGE, BACKTEST_ROWS_MAX="3")
    assert done.returncode == 1 and "more than 3 requests" in done.stderr


class Keys:
    """Stands in for the PostgreSQL key directory: 'analyst' and 'regulator' keys."""

    def principal(self, api_key: str | None, _address: str = "") -> Principal | None:
        if api_key in ("analyst", "regulator"):
            return Principal(client_id=api_key, name=api_key, roles=frozenset({Role(api_key)}))
        return None


def test_the_api_hands_out_the_same_history_as_the_engine(history: dict) -> None:
    settings = AnalyticsSettings(
        KAFKA_BOOTSTRAP="127.0.0.1:9",
        CLICKHOUSE_DSN=f"chdb://{history['engine']}",
        DATABASE_URL="postgresql://unused",
    )
    app = create_app(settings)  # without its lifespan: no sink, no Kafka, no PostgreSQL
    warehouse = Warehouse(settings.clickhouse_target)
    app.state.warehouse, app.state.clients = warehouse, Keys()
    start = T1 - timedelta(days=7)
    try:
        direct = list(historical(decision_history(warehouse, start, T2, 1_000)))
        client = TestClient(app)
        params = {"from": start.isoformat(), "to": T2.isoformat()}
        answer = client.get(
            "/v1/reports/backtest/history", params=params, headers={"X-API-Key": "analyst"}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["columns"][:2] == ["transaction_id", "requested_at"]
        assert list(historical(tuple(r) for r in body["rows"])) == direct
        assert len(direct) == 11  # 4 warm-up + 7 in the range; 'late' is after T2
        assert {r.decision for r in direct} == {"approve", "review", "decline", ""}
        refused = client.get(
            "/v1/reports/backtest/history", params=params, headers={"X-API-Key": "regulator"}
        )
        assert refused.status_code == 403
        inverted = {"from": T2.isoformat(), "to": T1.isoformat()}
        bad = client.get(
            "/v1/reports/backtest/history", params=inverted, headers={"X-API-Key": "analyst"}
        )
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "INVALID_RANGE")
    finally:
        warehouse.close()

"""The analysts' policy reloaded by the running stream: a new version's rule declines
within seconds, naming itself in the reason; a malformed file is refused and the running
version keeps deciding; a later version without the rule lets the same payment through.
And the backtest of a policy over what the running system just did, through the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import accepted, new_wallet, wait_final

RULE = "e2e-1337"
RELOAD_TIMEOUT_S = 20.0


def ship(path: Path, version: int, rules: list[dict[str, str]] | None = None) -> None:
    """As an analyst should: write beside the file, rename over it."""
    body = {"version": version, "review_threshold": 60, "decline_threshold": 85}
    temporary = path.with_suffix(".next")
    temporary.write_text(json.dumps({**body, "rules": rules or []}))
    temporary.replace(path)


def pay(api: httpx.Client, source: str, to: str, amount: str) -> dict[str, Any]:
    body = {
        "transaction_type": "PAYMENT",
        "source_wallet_id": source,
        "destination_wallet_id": to,
        "amount": amount,
        "currency_code": "USD",
    }
    return wait_final(api, accepted(api, body))


def until(api: httpx.Client, source: str, to: str, wanted: str) -> dict[str, Any]:
    """Pay 13.37 until the outcome is ``wanted`` (COMPLETED or FAILED)."""
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while True:
        result = pay(api, source, to, "13.37")
        if result["status"] == wanted or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_a_shipped_policy_decides_within_seconds(
    api: httpx.Client, running: dict[str, str]
) -> None:
    path = Path(running["STREAMS_POLICY_FILE"])
    version = json.loads(path.read_text())["version"]
    wallet, shop = new_wallet(api), new_wallet(api)
    deposit = {
        "transaction_type": "DEPOSIT",
        "destination_wallet_id": wallet,
        "amount": "1000.00",
        "currency_code": "USD",
    }
    assert wait_final(api, accepted(api, deposit))["status"] == "COMPLETED"
    assert pay(api, wallet, shop, "13.37")["status"] == "COMPLETED"
    rule = {
        "name": RULE,
        "when": "amount == 13.37 and transaction_type == 'PAYMENT'",
        "action": "decline",
    }
    try:
        shipped_at = time.monotonic()
        ship(path, version + 1, [rule])
        declined = until(api, wallet, shop, "FAILED")
        assert declined["failure_code"] == "FRAUD_DECLINED", declined
        assert declined["failure_reason"].startswith(f"policy v{version + 1} rule '{RULE}'")
        assert time.monotonic() - shipped_at < 10
        assert pay(api, wallet, shop, "13.38")["status"] == "COMPLETED"  # only what it names

        path.write_text('{"version": ' + str(version + 2) + ', "rules": [')  # malformed
        time.sleep(3)  # checked every second: refused, v+1 stays
        again = pay(api, wallet, shop, "13.37")
        assert again["status"] == "FAILED"
        assert again["failure_reason"].startswith(f"policy v{version + 1} rule '{RULE}'")
    finally:
        ship(path, version + 3)  # no rules: what the other tests expect
    assert until(api, wallet, shop, "COMPLETED")["status"] == "COMPLETED"


def test_backtest_reads_the_running_system_through_the_analytics_api(
    api: httpx.Client, running: dict[str, str], stack_dir: Path, tmp_path: Path
) -> None:
    start = datetime.now(UTC)  # after what the test before did: its payments are decided
    wallet, shop = new_wallet(api), new_wallet(api)
    deposit = {
        "transaction_type": "DEPOSIT",
        "destination_wallet_id": wallet,
        "amount": "100.00",
        "currency_code": "USD",
    }
    assert wait_final(api, accepted(api, deposit))["status"] == "COMPLETED"
    paid = {
        amount: [pay(api, wallet, shop, amount) for _ in range(3)] for amount in ("13.37", "5.00")
    }
    assert all(p["status"] == "COMPLETED" for ps in paid.values() for p in ps)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "transaction_id,label\n"
        + "".join(
            f"{p['transaction_id']},{int(a == '13.37')}\n" for a, ps in paid.items() for p in ps
        )
    )
    candidate = tmp_path / "candidate.json"
    ship(candidate, 1, [{"name": "leet", "when": "amount == 13.37", "action": "decline"}])
    command = [sys.executable, "-m", "walletpipe.cli", "models", "backtest", "--json"]
    command += ["--policy", str(candidate), "--labels", str(labels)]
    command += [
        "--from",
        start.isoformat(),
        "--to",
        (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
    ]
    env = {**os.environ, **running, "WALLETPIPE_LOCAL_DIR": str(stack_dir)}
    env.pop("ANALYTICS_API_KEY", None)  # the CLI's own local key
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while True:  # the sink writes within a flush interval (3 s)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        if answer["candidate"]["labelled"] == 6 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert answer["source"] == "api"
    candidate_figures, in_force = answer["candidate"], answer["baseline"]
    assert candidate_figures["labelled"] == 6
    assert (candidate_figures["fraud_declined"], candidate_figures["good_hurt"]) == (3, 0)
    assert candidate_figures["money_saved"] == {"USD": "40.1100"}
    assert candidate_figures["rules"] == {"leet": 3}
    assert (in_force["fraud_declined"], in_force["fraud_approved"]) == (0, 3)

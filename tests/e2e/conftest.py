"""The running system for end-to-end tests: the real stack plus every service as a process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from walletpipe.supervisor import Supervisor, services

#: Fees on in the e2e run, so fee postings are proven too.
E2E_FEES = '{"WITHDRAWAL": {"basis_points": 0, "fixed": "1.00"}, "PAYMENT": {"basis_points": 100}}'
#: The simulated payment gateway answers fast and never declines unless a test asks it to
#: (metadata gateway_outcome); holds without an answer expire after E2E_HOLD_TIMEOUT_MS.
E2E_HOLD_TIMEOUT_MS = 3000
E2E_GATEWAY = {
    "GATEWAY_LATENCY_MS": "20",
    "GATEWAY_DECLINE_RATE": "0",
    "LEDGER_HOLD_TIMEOUT_MS": str(E2E_HOLD_TIMEOUT_MS),
    # Held fraud reviews decline after this long (300 s by default): the timeout test waits.
    "STREAMS_REVIEW_TIMEOUT_S": "8",
}
#: Webhooks to the tests' receivers on loopback, retried after 0.1 s, 0.2 s ... (not 10 s).
E2E_WEBHOOKS = {
    "WEBHOOK_ALLOW_LOOPBACK": "true",
    "WEBHOOK_RETRY_BASE_MS": "100",
    "WEBHOOK_RETRY_DELAY_MAX_MS": "1000",
    "WEBHOOK_SUBSCRIPTIONS_REFRESH_MS": "200",
}


#: The stream runs under an analysts' policy file that says what its defaults say (60 / 85,
#: no rules); test_policy_reload.py ships new versions of it while the stream runs.
E2E_POLICY = {"version": 1, "review_threshold": 60, "decline_threshold": 85, "rules": []}


# Package scope: the services stop when the e2e tests are done, before the integration tests
# (which feed the same topics by hand) run; a live writer or detector would answer them too.
@pytest.fixture(scope="package")
def running(stack: dict[str, str], stack_dir: Path) -> Iterator[dict[str, str]]:
    policy_file = stack_dir / f"fraud-policy-{uuid.uuid4().hex[:8]}.json"
    policy_file.write_text(json.dumps(E2E_POLICY))
    env = {
        **stack,
        "FEE_SCHEDULE": E2E_FEES,
        "STREAMS_LOG_LEVEL": "warn",
        **E2E_GATEWAY,
        **E2E_WEBHOOKS,
    }
    env["STREAMS_POLICY_FILE"] = str(policy_file)
    supervisor = Supervisor(
        env, stack_dir / "logs" / f"e2e-{uuid.uuid4().hex[:8]}", Path(__file__).resolve().parents[2]
    )
    wanted = services(env)
    supervisor.start(wanted)
    try:
        supervisor.wait_ready(wanted)
        yield env
        supervisor.check_alive()  # every service must have survived the whole suite
    finally:
        supervisor.stop()
        policy_file.unlink(missing_ok=True)


@pytest.fixture(scope="package")
def api(running: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=running["INGEST_URL"], timeout=30, headers={"X-API-Key": running["DEMO_API_KEY"]}
    ) as client:
        yield client

"""API keys, roles and rate limits against the real services: two ingest API processes
(uvicorn, as `walletpipe run` starts one) and the analytics service, on the test stack's
PostgreSQL and Kafka.

- keys are issued, listed, rotated (both keys work during the grace) and revoked through
  the API and `walletpipe keys`; a revocation or an expiry holds in every process within
  a second;
- analyst and regulator keys create no users and move no money;
- a client's limit is one bucket for both processes; failed authentications are limited
  per address before any lookup; the analytics API is limited too; 429s carry Retry-After
  and the RateLimit headers.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.helpers import make_client, sql
from tests.integration.test_analytics_service import Service, free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60
#: Revocations and expiries hold in every service within this long (the promise tested).
IN_FORCE_S = 1.0


def call(
    url: str, key: str | None, source: str = "127.0.0.1", method: str = "GET", **kwargs: object
) -> httpx.Response:
    """A request from ``source`` (any 127.x address is this host's loopback): each test
    that fails authentications does so from an address of its own, since the services
    limit failures per address."""
    headers = {"X-API-Key": key} if key else {}
    headers.update(kwargs.pop("headers", {}))  # type: ignore[arg-type]
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]


class Ingest:
    """One ``uvicorn ingest_api.app`` process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env, self.log = {**env, "INGEST_URL": self.url}, log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "ingest_api.app:create_app"]
                + ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"ingest did not start: {self.log.read_text()[-3000:]}")

    def call(
        self, method: str, path: str, key: str | None, source: str = "127.0.0.1", **kwargs: object
    ) -> httpx.Response:
        return call(f"{self.url}{path}", key, source, method, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def ingests(
    stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Ingest]]:
    """Two processes sharing a rate-limit file of their own (not the e2e services')."""
    home = tmp_path_factory.mktemp("ingest")
    env = {
        **os.environ,
        **stack,
        "INGEST_RATE_LIMIT_FILE": str(home / "buckets"),
        "AUTH_FAILURES_BURST": "5",
        "AUTH_FAILURES_PER_SECOND": "0.1",
    }
    both = [Ingest(env, home / f"ingest-{n}.log") for n in (1, 2)]
    try:
        for one in both:
            one.wait_ready()
        yield both
    finally:
        for one in both:
            one.stop()


@pytest.fixture(scope="module")
def analytics(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("analytics-keys")
    env = {
        **os.environ,
        **stack,
        "CLICKHOUSE_DSN": f"chdb://{home / 'clickhouse'}",
        "ANALYTICS_URL": f"http://127.0.0.1:{free_port()}",
        "CONSUMER_GROUP": f"analytics-keys-{uuid.uuid4().hex[:8]}",
        "ANALYTICS_RATE_LIMIT_FILE": str(home / "buckets"),
        "AUTH_FAILURES_BURST": "5",
        "AUTH_FAILURES_PER_SECOND": "0.1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("CLICKHOUSE_URL", None)
    running = Service(env, home / "service.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def admin(stack: dict[str, str]) -> str:
    return make_client(stack["DATABASE_URL"], role="admin")


def issue(ingest: Ingest, admin: str, roles: list[str], **fields: object) -> dict:
    body = {"client_name": f"keys-{uuid.uuid4().hex[:10]}", "roles": roles, **fields}
    answer = ingest.call("POST", "/v1/keys", admin, json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def cli(stack_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "walletpipe.cli", "keys", *args],
        env={**os.environ, "WALLETPIPE_LOCAL_DIR": str(stack_dir)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_are_issued_listed_rotated_and_revoked(ingests: list[Ingest], admin: str) -> None:
    first, second = ingests
    issued = issue(first, admin, ["pos"], label="till 1")
    key, key_id = issued["api_key"], issued["key"]["key_id"]
    assert issued["key"]["key_prefix"] == key[:10] and issued["key"]["status"] == "ACTIVE"
    me = second.call("GET", "/v1/me", key).json()
    assert (me["key_id"], me["roles"]) == (key_id, ["pos"])
    listed = first.call("GET", "/v1/keys", key).json()["keys"]
    assert [k["key_id"] for k in listed] == [key_id]
    assert key not in str(listed)  # never the secret again

    rotated = first.call("POST", f"/v1/keys/{key_id}/rotate", key, json={"grace_seconds": 600})
    assert rotated.status_code == 201, rotated.text
    new_key = rotated.json()["api_key"]
    assert rotated.json()["key"]["rotated_from"] == key_id
    grace_end = datetime.fromisoformat(rotated.json()["previous"]["expires_at"])
    assert timedelta(seconds=590) < grace_end - datetime.now(UTC) <= timedelta(seconds=600)
    for ingest in ingests:  # both work during the grace period
        assert ingest.call("GET", "/v1/me", key).status_code == 200
        assert ingest.call("GET", "/v1/me", new_key).json()["roles"] == ["pos"]

    # A key rotates itself only; revoking a sibling is allowed.
    new_id = rotated.json()["key"]["key_id"]
    refused = first.call("POST", f"/v1/keys/{new_id}/rotate", key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "KEY_FORBIDDEN")
    revoked = first.call("POST", f"/v1/keys/{key_id}/revoke", new_key)
    assert revoked.json()["status"] == "REVOKED"
    time.sleep(IN_FORCE_S)
    for ingest in ingests:
        gone = ingest.call("GET", "/v1/me", key, source="127.0.0.11")
        assert (gone.status_code, gone.json()["error"]["code"]) == (401, "API_KEY_REVOKED")
        assert ingest.call("GET", "/v1/me", new_key).status_code == 200

    # Another client's keys are invisible; only admins issue keys.
    other = issue(first, admin, ["customer_app"])["api_key"]
    assert first.call("GET", f"/v1/keys/{new_id}", other).status_code == 404
    assert first.call("POST", f"/v1/keys/{new_id}/revoke", other).status_code == 404
    made = first.call("POST", "/v1/keys", other, json={"client_name": "x", "roles": ["admin"]})
    assert (made.status_code, made.json()["error"]["code"]) == (403, "ROLE_FORBIDDEN")


def test_revocation_and_expiry_hold_in_every_service_within_a_second(
    ingests: list[Ingest], analytics: Service, admin: str, stack_dir: Path
) -> None:
    issued = issue(ingests[0], admin, ["analyst"])
    key, key_id = issued["api_key"], issued["key"]["key_id"]
    soon = datetime.now(UTC) + timedelta(seconds=6)
    expiring = issue(ingests[0], admin, ["analyst"], expires_at=soon.isoformat())["api_key"]
    for one in (key, expiring):  # every process has both keys cached
        for ingest in ingests:
            assert ingest.call("GET", "/v1/me", one).status_code == 200
        assert analytics.get("/v1/reports/fraud-rates", one).status_code == 200

    # Revoked from the command line, straight in PostgreSQL: no service is told.
    done = cli(stack_dir, "revoke", key_id)
    assert done.returncode == 0 and "REVOKED" in done.stdout, done.stderr
    time.sleep(IN_FORCE_S)
    reports = f"{analytics.url}/v1/reports/fraud-rates"
    for ingest in ingests:
        gone = ingest.call("GET", "/v1/me", key, source="127.0.0.12")
        assert gone.json()["error"]["code"] == "API_KEY_REVOKED"
    answer = call(reports, key, "127.0.0.12")
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "API_KEY_REVOKED")

    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
    for ingest in ingests:
        gone = ingest.call("GET", "/v1/me", expiring, source="127.0.0.12")
        assert (gone.status_code, gone.json()["error"]["code"]) == (401, "API_KEY_EXPIRED")
    gone = call(reports, expiring, "127.0.0.12")
    assert (gone.status_code, gone.json()["error"]["code"]) == (401, "API_KEY_EXPIRED")


def test_the_cli_issues_lists_and_rotates(
    ingests: list[Ingest], stack_dir: Path, stack: dict[str, str]
) -> None:
    client = f"cli-{uuid.uuid4().hex[:8]}"
    made = cli(stack_dir, "create", "--client", client, "--role", "pos,customer_app")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert ingests[1].call("GET", "/v1/me", key).json()["roles"] == ["customer_app", "pos"]
    listed = cli(stack_dir, "list", "--client", client, "--json")
    assert listed.returncode == 0 and key not in listed.stdout and key[:10] in listed.stdout
    key_id = listed.stdout.split('"key_id": "')[1].split('"')[0]
    rotated = cli(stack_dir, "rotate", key_id, "--grace-seconds", "0")
    assert rotated.returncode == 0, rotated.stderr
    time.sleep(IN_FORCE_S)
    expired = ingests[0].call("GET", "/v1/me", key, source="127.0.0.13")
    assert expired.json()["error"]["code"] == "API_KEY_EXPIRED"
    assert ingests[0].call("GET", "/v1/me", rotated.stdout.strip()).status_code == 200
    bad = cli(stack_dir, "create", "--client", client, "--role", "root")
    assert bad.returncode == 1 and "UNKNOWN_ROLE" in bad.stderr
    rows = sql(
        stack["DATABASE_URL"],
        "SELECT count(*) FROM api_keys k JOIN api_clients c USING (client_id)"
        " WHERE c.name = %s AND k.key_hash LIKE %s",
        (client, f"%{key[3:13]}%"),
    )
    assert rows == [(0,)]  # the secret is nowhere in the table


@pytest.mark.parametrize("role", ["analyst", "regulator", "compliance", "admin"])
def test_reporting_keys_create_no_users_and_move_no_money(
    ingests: list[Ingest], stack: dict[str, str], role: str
) -> None:
    key = make_client(stack["DATABASE_URL"], role=role)
    user = {
        "email": f"r-{uuid.uuid4().hex[:12]}@example.com",
        "phone_number": f"+1{uuid.uuid4().int % 10**12:012d}",
        "password": "long enough secret",
        "first_name": "R",
        "last_name": "K",
        "date_of_birth": "1990-01-01",
    }
    refused = ingests[0].call("POST", "/v1/users", key, json=user)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "ROLE_FORBIDDEN")
    payment = {
        "transaction_type": "DEPOSIT",
        "destination_wallet_id": str(uuid.uuid4()),
        "amount": "1.00",
        "currency_code": "USD",
    }
    moved = ingests[1].call(
        "POST", "/v1/transactions", key, json=payment, headers={"Idempotency-Key": "k1"}
    )
    assert (moved.status_code, moved.json()["error"]["code"]) == (403, "ROLE_FORBIDDEN")
    assert sql(
        stack["DATABASE_URL"], "SELECT count(*) FROM users WHERE email = %s", (user["email"],)
    ) == [(0,)]


def test_a_clients_limit_is_one_bucket_across_processes(
    ingests: list[Ingest], stack: dict[str, str]
) -> None:
    """Rate 1/s, burst 5: two processes that each kept their own bucket would allow 10 at
    once; one shared bucket allows 5, plus what refilled while the requests ran."""
    key = make_client(stack["DATABASE_URL"], rate_limit_per_second=1, burst=5)
    statuses = []
    started = time.monotonic()
    for n in range(24):
        statuses.append(ingests[n % 2].call("GET", "/v1/me", key))
    elapsed = time.monotonic() - started
    allowed = sum(1 for r in statuses if r.status_code == 200)
    assert 5 <= allowed <= 5 + math.ceil(elapsed), (allowed, elapsed)
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and {r.json()["error"]["code"] for r in limited} == {"RATE_LIMITED"}
    one = limited[-1]
    assert int(one.headers["Retry-After"]) >= 1
    assert one.headers["RateLimit-Limit"] == "5" and one.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(one.headers["RateLimit-Reset"]) <= 5


def test_the_cli_changes_a_clients_and_a_keys_limit_in_every_process(
    ingests: list[Ingest], stack_dir: Path
) -> None:
    """Issued at 1,000/s; lowered by the CLI to 1/s with a burst of 3, within a second both
    processes share the new bucket; then the key's own limit (burst 2) narrows it again."""
    client = f"limits-{uuid.uuid4().hex[:8]}"
    made = cli(stack_dir, "create", "--client", client, "--role", "pos")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert all(ingests[n % 2].call("GET", "/v1/me", key).status_code == 200 for n in range(8))
    lowered = cli(stack_dir, "limits", "--client", client, "--per-second", "1", "--burst", "3")
    assert lowered.returncode == 0, lowered.stderr
    time.sleep(IN_FORCE_S)
    codes = [ingests[n % 2].call("GET", "/v1/me", key).status_code for n in range(8)]
    assert 3 <= codes.count(200) <= 4 and 429 in codes, codes
    key_id = cli(stack_dir, "list", "--client", client, "--json").stdout.split('"key_id": "')[1]
    own = cli(
        stack_dir, "limits", "--key", key_id.split('"')[0], "--per-second", "1", "--burst", "2"
    )
    assert own.returncode == 0, own.stderr
    time.sleep(IN_FORCE_S + 3)  # the client's bucket refills meanwhile; the key's is new
    codes = [ingests[n % 2].call("GET", "/v1/me", key).status_code for n in range(8)]
    assert 2 <= codes.count(200) <= 3, codes
    refused = cli(stack_dir, "limits", "--client", client, "--per-second", "0")
    assert refused.returncode == 1 and "between 1 and" in refused.stderr


def test_failed_authentications_are_limited_per_address_before_any_lookup(
    ingests: list[Ingest], stack: dict[str, str]
) -> None:
    """Burst 5 for both processes together; once spent, even a valid key that is not
    cached yet is refused before PostgreSQL is asked (its lookup would be the database
    work the limit saves); a cached one is not affected."""
    source = "127.0.0.14"
    cached, new_key = make_client(stack["DATABASE_URL"]), make_client(stack["DATABASE_URL"])
    assert ingests[0].call("GET", "/v1/me", cached, source).status_code == 200
    assert ingests[1].call("GET", "/v1/me", cached, source).status_code == 200
    codes = []
    for n in range(12):
        answer = ingests[n % 2].call("GET", "/v1/me", f"wp_wrong_{n}", source)
        codes.append(answer.json()["error"]["code"])
        if answer.status_code == 429:
            break
    assert codes[:5] == ["INVALID_API_KEY"] * 5 and codes[-1] == "AUTH_RATE_LIMITED", codes
    refused = ingests[0].call("GET", "/v1/me", new_key, source)  # valid, but never looked up
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "AUTH_RATE_LIMITED"
    assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["RateLimit-Limit"] == "5"
    assert ingests[1].call("GET", "/v1/me", cached, source).status_code == 200
    assert ingests[1].call("GET", "/v1/me", new_key, "127.0.0.15").status_code == 200


def test_the_analytics_api_is_limited_too(analytics: Service, stack: dict[str, str]) -> None:
    """An unknown report name answers 404 after authentication: a cheap request."""
    key = make_client(stack["DATABASE_URL"], role="analyst", rate_limit_per_second=1, burst=3)
    nowhere = f"{analytics.url}/v1/reports/no-such-report"
    answers = [call(nowhere, key) for _ in range(12)]
    assert [a.status_code for a in answers[:3]] == [404] * 3
    limited = [a for a in answers if a.status_code == 429]
    assert limited and limited[0].json()["error"]["code"] == "RATE_LIMITED"
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].headers["RateLimit-Limit"] == "3"
    codes = [call(nowhere, f"wp_no_{n}", "127.0.0.16").status_code for n in range(10)]
    assert codes[:5] == [401] * 5 and 429 in codes[5:]

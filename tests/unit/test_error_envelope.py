"""Both HTTP edges answer every error as ``{"error": {"code", "message"}}`` with a stable code,
and refuse bad input before any handler runs.

The apps run in-process without their lifespan (no PostgreSQL, Kafka or ClickHouse): the
stores they would reach are stand-ins that fail loudly if touched, so a 4xx here also shows
that nothing behind the edge ran. tests/e2e/test_bad_input.py replays the same inputs
against the real running services.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from analytics.auth import Principal
from analytics.service import create_app as create_analytics_app
from analytics.settings import AnalyticsSettings
from domain.access import KeyGrant
from domain.access import Role as KeyRole
from ingest_api.app import create_app as create_ingest_app
from ingest_api.errors import REQUEST_BODY_BYTES_MAX
from ingest_api.settings import IngestSettings

WALLET = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


class Untouchable:
    """A store the edge must not reach for a refused request: any use is an error (500)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"internal detail: {name} was reached")


class EdgeOnlyAuthenticator:
    """Grants every key ("analyst" as an analyst, anything else a tenant app); nothing
    behind the edge (the service, its stores) may be reached."""

    async def authenticate(self, api_key: str | None, _address: str) -> KeyGrant:
        if api_key == "crash":
            raise RuntimeError("internal detail: the key store is broken")
        roles = {KeyRole.ANALYST} if api_key == "analyst" else {KeyRole.CUSTOMER_APP, KeyRole.POS}
        return KeyGrant(uuid.uuid4(), uuid.uuid4(), "test", frozenset(roles), None, 1000, 2000)


@pytest.fixture(scope="module")
def ingest() -> Iterator[TestClient]:
    app = create_ingest_app(
        IngestSettings(DATABASE_URL="postgresql:///none", KAFKA_BOOTSTRAP="x:1")
    )
    app.state.service, app.state.authenticator = Untouchable(), EdgeOnlyAuthenticator()
    yield TestClient(app, raise_server_exceptions=False, headers={"X-API-Key": "k"})


def error_of(answer: httpx.Response) -> tuple[int, str]:
    body = answer.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
    return answer.status_code, body["error"]["code"]


def payment(**changes: object) -> dict[str, object]:
    return {
        "transaction_type": "TRANSFER",
        "source_wallet_id": WALLET,
        "destination_wallet_id": str(uuid.uuid4()),
        "amount": "1.00",
        "currency_code": "USD",
        **changes,
    }


def post(client: TestClient, path: str, body: object, **headers: str) -> httpx.Response:
    # json.dumps escapes every non-ASCII character, so a lone surrogate travels as the
    # JSON escape \ud800 (which is how a client can send one at all).
    return client.post(
        path,
        content=json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            "Idempotency-Key": str(uuid.uuid4()),
            **headers,
        },
    )


# The exact inputs of issue 10 (items 1-3), each refused before anything is recorded.
ISSUE_INPUTS = [
    ("metadata integer past int64", payment(metadata={"n": 10**30}), "INVALID_METADATA"),
    ("NUL in description", payment(description="rent\x00"), "INVALID_TEXT"),
    ("NUL in a metadata key", payment(metadata={"a\x00": "x"}), "INVALID_TEXT"),
    ("NUL in a metadata value", payment(metadata={"channel": "p\x00s"}), "INVALID_TEXT"),
    ("NUL in external_reference_id", payment(external_reference_id="r\x00"), "INVALID_TEXT"),
    ("amount 1_0", payment(amount="1_0"), "INVALID_AMOUNT"),
    ("amount 1_00", payment(amount="1_00"), "INVALID_AMOUNT"),
    ("Arabic-Indic digits", payment(amount="\u0661\u0660"), "INVALID_AMOUNT"),
    ("full-width digits", payment(amount="\uff11\uff10"), "INVALID_AMOUNT"),
    ("a sign", payment(amount="+3.00"), "INVALID_AMOUNT"),
    ("blanks", payment(amount=" 2.00 "), "INVALID_AMOUNT"),
    ("an exponent", payment(amount="1e1"), "INVALID_AMOUNT"),
    ("a lone surrogate", payment(description="\ud800"), "INVALID_TEXT"),
    ("an id without hyphens", payment(source_wallet_id=WALLET.replace("-", "")), "INVALID_FIELD"),
]


@pytest.mark.parametrize(("name", "body", "code"), ISSUE_INPUTS, ids=[c[0] for c in ISSUE_INPUTS])
def test_the_issues_transactions_are_refused_at_the_edge(
    ingest: TestClient, name: str, body: dict, code: str
) -> None:
    assert error_of(post(ingest, "/v1/transactions", body)) == (422, code)


def test_a_users_names_reversal_descriptions_and_review_notes_refuse_nul(
    ingest: TestClient,
) -> None:
    user = {
        "email": "a@example.com",
        "phone_number": "+15550001111",
        "password": "a long secret",
        "first_name": "A\x00",
        "last_name": "B",
        "date_of_birth": "1990-01-01",
    }
    assert error_of(post(ingest, "/v1/users", user)) == (422, "INVALID_TEXT")
    reversal = {"amount": "1.00", "description": "back\x00"}
    path = f"/v1/transactions/{uuid.uuid4()}/reversals"
    assert error_of(post(ingest, path, reversal)) == (422, "INVALID_TEXT")
    note = post(
        ingest, f"/v1/reviews/{uuid.uuid4()}/approve", {"note": "\x00"}, **{"X-API-Key": "analyst"}
    )
    assert error_of(note) == (422, "INVALID_TEXT")
    user.update(first_name="A", date_of_birth=1700000000)  # a timestamp is not a date
    assert error_of(post(ingest, "/v1/users", user)) == (422, "INVALID_FIELD")


def test_limit_amounts_use_the_one_grammar(ingest: TestClient) -> None:
    limit = {
        "wallet_id": WALLET,
        "transaction_type": "PAYMENT",
        "period_type": "DAILY",
        "max_amount": "1_000",
        "max_count": 1,
    }
    assert error_of(post(ingest, "/v1/limits", limit)) == (422, "INVALID_FIELD")
    assert error_of(post(ingest, "/v1/limits", {**limit, "max_amount": " 5 "})) == (
        422,
        "INVALID_FIELD",
    )


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/nowhere", 404, "NOT_FOUND"),
        (f"/v1/wallets/{WALLET.replace('-', '')}/balance", 422, "INVALID_FIELD"),
        (f"/v1/wallets/{{{WALLET}}}/balance", 422, "INVALID_FIELD"),
    ],
)
def test_routes_and_path_ids(ingest: TestClient, path: str, status: int, code: str) -> None:
    assert error_of(ingest.get(path)) == (status, code)


def test_a_method_the_route_does_not_have_is_405(ingest: TestClient) -> None:
    answer = ingest.delete("/v1/transactions")
    assert error_of(answer) == (405, "METHOD_NOT_ALLOWED")
    assert "POST" in answer.headers["allow"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"transaction_type": "DEP',  # cut short
        b"1" * 5000,  # a number Python will not read (more than 4300 digits)
        b"[" * 50_000,  # nested deeper than the parser recurses
        b"\xff\xfe",  # not UTF-8
    ],
    ids=["truncated", "huge-number", "deep", "not-utf8"],
)
def test_a_body_that_does_not_parse_is_400(ingest: TestClient, raw: bytes) -> None:
    answer = ingest.post(
        "/v1/transactions",
        content=raw,
        headers={"content-type": "application/json", "Idempotency-Key": "k"},
    )
    assert error_of(answer) == (400, "MALFORMED_JSON")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_not_sent_as_json_is_415(ingest: TestClient, content_type: str | None) -> None:
    headers = {"Idempotency-Key": "k"}
    if content_type:
        headers["content-type"] = content_type
    answer = ingest.post("/v1/transactions", content=b'{"a": 1}', headers=headers)
    assert error_of(answer) == (415, "UNSUPPORTED_MEDIA_TYPE")


def test_an_oversized_body_is_413(ingest: TestClient) -> None:
    huge = payment(description="x" * REQUEST_BODY_BYTES_MAX)
    assert error_of(post(ingest, "/v1/transactions", huge)) == (413, "PAYLOAD_TOO_LARGE")


def test_an_unexpected_failure_is_a_generic_500_envelope(ingest: TestClient) -> None:
    answer = ingest.get("/v1/me", headers={"X-API-Key": "crash"})
    assert error_of(answer) == (500, "INTERNAL_ERROR")
    assert "internal detail" not in answer.text


# --- analytics ---------------------------------------------------------------------------


class KnownKeys:
    def principal(self, api_key: str | None, _address: str) -> Principal | None:
        roles = {"analyst": KeyRole.ANALYST, "regulator": KeyRole.REGULATOR}
        return Principal("c", "test", frozenset({roles[api_key]})) if api_key in roles else None


@pytest.fixture(scope="module")
def analytics() -> Iterator[TestClient]:
    settings = AnalyticsSettings(
        KAFKA_BOOTSTRAP="x:1", CLICKHOUSE_DSN="chdb:///nowhere", DATABASE_URL="postgresql:///none"
    )
    app = create_analytics_app(settings)
    app.state.clients, app.state.warehouse = KnownKeys(), Untouchable()
    yield TestClient(app, raise_server_exceptions=False, headers={"X-API-Key": "analyst"})


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/reports/volume", {"to": "0999-01-01T00:00Z"}, 422, "INVALID_RANGE"),
        ("/v1/reports/volume", {"from": "0001-01-01T00:00+01:00"}, 422, "INVALID_RANGE"),
        ("/v1/reports/latency", {"to": "9999-12-31T23:59:59Z"}, 422, "INVALID_RANGE"),
        ("/v1/reports/volume", {"currency": "U\x00D"}, 422, "INVALID_REQUEST"),
        ("/v1/reports/volume", {"currency": "usd"}, 422, "INVALID_REQUEST"),
        ("/v1/reports/volume", {"transaction_type": "LOAN"}, 422, "INVALID_REQUEST"),
        ("/v1/reports/dashboard", {"minutes": "100000"}, 422, "INVALID_REQUEST"),
        (f"/v1/reports/transactions/{WALLET.replace('-', '')}", {}, 422, "INVALID_REQUEST"),
        ("/nowhere", {}, 404, "NOT_FOUND"),
    ],
)
def test_analytics_refusals(
    analytics: TestClient, path: str, params: dict, status: int, code: str
) -> None:
    assert error_of(analytics.get(path, params=params)) == (status, code)


def test_analytics_export_periods_and_methods(analytics: TestClient) -> None:
    regulator = {"X-API-Key": "regulator"}
    for period in ("9999-12-31", "0001-01", "x" * 11):
        answer = analytics.get(
            "/v1/reports/regulatory/export", params={"period": period}, headers=regulator
        )
        assert answer.status_code == 422 and error_of(answer)[1] in {
            "INVALID_PERIOD",
            "INVALID_REQUEST",
        }
    assert error_of(analytics.post("/v1/reports/volume")) == (405, "METHOD_NOT_ALLOWED")


def test_analytics_unexpected_failure_is_a_generic_500_envelope(analytics: TestClient) -> None:
    answer = analytics.get("/v1/reports/volume")  # valid: it reaches the (broken) warehouse
    assert error_of(answer) == (500, "INTERNAL_ERROR")
    assert "internal detail" not in answer.text

"""Every bad request gets a 4xx JSON error with a stable code, and nothing is recorded or
published: the API records a request (and only then publishes it) under its Idempotency-Key,
so no row under the key proves nothing went out."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.helpers import make_client, new_wallet, sql

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wallets(api: httpx.Client, running: dict) -> dict[str, str]:
    other_key = make_client(running["DATABASE_URL"])
    with httpx.Client(
        base_url=running["INGEST_URL"], timeout=10, headers={"X-API-Key": other_key}
    ) as other:
        foreign = new_wallet(other)
    return {
        "usd": new_wallet(api),
        "usd2": new_wallet(api),
        "eur": new_wallet(api, "EUR"),
        "jpy": new_wallet(api, "JPY"),
        "foreign": foreign,
    }


def _payment(
    source: str, destination: str, amount: object = "1.00", currency: str = "USD", **extra: object
) -> dict:
    return {
        "transaction_type": "TRANSFER",
        "source_wallet_id": source,
        "destination_wallet_id": destination,
        "amount": amount,
        "currency_code": currency,
        **extra,
    }


CASES = [
    ("unknown field", lambda w: _payment(w["usd"], w["usd2"], colour="red"), 422, "UNKNOWN_FIELD"),
    (
        "missing field",
        lambda w: {"transaction_type": "DEPOSIT", "amount": "1.00"},
        422,
        "MISSING_FIELD",
    ),
    (
        "unknown type",
        lambda w: {**_payment(w["usd"], w["usd2"]), "transaction_type": "LOAN"},
        422,
        "INVALID_FIELD",
    ),
    ("zero amount", lambda w: _payment(w["usd"], w["usd2"], "0"), 422, "INVALID_AMOUNT"),
    ("negative amount", lambda w: _payment(w["usd"], w["usd2"], "-5.00"), 422, "INVALID_AMOUNT"),
    (
        "over-precise amount",
        lambda w: _payment(w["usd"], w["usd2"], "1.001"),
        422,
        "INVALID_AMOUNT",
    ),
    (
        "fractional yen",
        lambda w: _payment(w["jpy"], w["foreign"], "1.5", "JPY"),
        422,
        "INVALID_AMOUNT",
    ),
    (
        "amount as a JSON number",
        lambda w: _payment(w["usd"], w["usd2"], 1.5),
        422,
        "INVALID_AMOUNT",
    ),
    ("not a number", lambda w: _payment(w["usd"], w["usd2"], "ten"), 422, "INVALID_AMOUNT"),
    (
        "currency not the wallet's",
        lambda w: _payment(w["usd"], w["usd2"], "1.00", "EUR"),
        422,
        "CURRENCY_MISMATCH",
    ),
    (
        "destination in another currency",
        lambda w: _payment(w["usd"], w["eur"]),
        422,
        "CURRENCY_MISMATCH",
    ),
    (
        "unsupported currency",
        lambda w: _payment(w["usd"], w["usd2"], "1.00", "XXX"),
        422,
        "UNSUPPORTED_CURRENCY",
    ),
    (
        "transfer to the same wallet",
        lambda w: _payment(w["usd"], w["usd"]),
        422,
        "INVALID_TRANSACTION",
    ),
    (
        "deposit with a source",
        lambda w: {
            "transaction_type": "DEPOSIT",
            "source_wallet_id": w["usd"],
            "destination_wallet_id": w["usd2"],
            "amount": "1.00",
            "currency_code": "USD",
        },
        422,
        "INVALID_TRANSACTION",
    ),
    ("unknown wallet", lambda w: _payment(str(uuid.uuid4()), w["usd2"]), 404, "WALLET_NOT_FOUND"),
    ("someone else's wallet", lambda w: _payment(w["foreign"], w["usd"]), 403, "WALLET_FORBIDDEN"),
    (
        "deposit into someone else's wallet",
        lambda w: {
            "transaction_type": "DEPOSIT",
            "destination_wallet_id": w["foreign"],
            "amount": "1.00",
            "currency_code": "USD",
        },
        403,
        "WALLET_FORBIDDEN",
    ),
]


@pytest.mark.parametrize(
    ("name", "make_body", "status", "code"), CASES, ids=[case[0] for case in CASES]
)
def test_bad_transaction_is_refused_and_nothing_recorded(
    api: httpx.Client, running: dict, wallets: dict, name: str, make_body, status: int, code: str
) -> None:
    key = f"bad-{uuid.uuid4()}"
    answer = api.post("/v1/transactions", json=make_body(wallets), headers={"Idempotency-Key": key})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["message"]
    assert (
        sql(
            running["DATABASE_URL"],
            "SELECT 1 FROM transaction_requests WHERE idempotency_key = %s",
            (key,),
        )
        == []
    )


def test_malformed_json(api: httpx.Client) -> None:
    answer = api.post(
        "/v1/transactions",
        content=b'{"transaction_type": "DEP',
        headers={"Idempotency-Key": str(uuid.uuid4()), "content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "MALFORMED_JSON"


def test_missing_idempotency_key(api: httpx.Client, wallets: dict) -> None:
    answer = api.post("/v1/transactions", json=_payment(wallets["usd"], wallets["usd2"]))
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "MISSING_IDEMPOTENCY_KEY"


@pytest.mark.parametrize(
    ("headers", "code"), [({}, "MISSING_API_KEY"), ({"X-API-Key": "wp_wrong"}, "INVALID_API_KEY")]
)
def test_api_key_required_on_every_v1_route(
    running: dict, wallets: dict, headers: dict, code: str
) -> None:
    with httpx.Client(base_url=running["INGEST_URL"], timeout=10, headers=headers) as anon:
        for method, path in [
            ("POST", "/v1/transactions"),
            ("POST", "/v1/users"),
            ("POST", "/v1/wallets"),
            ("GET", f"/v1/wallets/{wallets['usd']}/balance"),
            ("GET", f"/v1/transactions/{uuid.uuid4()}"),
        ]:
            answer = anon.request(method, path, json={} if method == "POST" else None)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["code"] == code
        assert anon.get("/health").status_code == 200
        assert anon.get("/openapi.json").status_code == 200


def test_wallet_for_another_clients_user_is_forbidden(api: httpx.Client, running: dict) -> None:
    other_key = make_client(running["DATABASE_URL"])
    with httpx.Client(
        base_url=running["INGEST_URL"], timeout=10, headers={"X-API-Key": other_key}
    ) as other:
        user = other.post(
            "/v1/users",
            json={
                "email": f"o-{uuid.uuid4().hex[:12]}@example.com",
                "phone_number": f"+1{uuid.uuid4().int % 10**12:012d}",
                "password": "long enough!",
                "first_name": "O",
                "last_name": "Ther",
                "date_of_birth": "1980-01-01",
            },
        ).json()
    answer = api.post("/v1/wallets", json={"user_id": user["user_id"], "currency_code": "USD"})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "USER_FORBIDDEN"
    unknown = api.post("/v1/wallets", json={"user_id": str(uuid.uuid4()), "currency_code": "USD"})
    assert unknown.json()["error"]["code"] == "USER_NOT_FOUND"


def test_rate_limit_answers_429_with_a_code(running: dict) -> None:
    slow_key = make_client(running["DATABASE_URL"], rate_limit_per_second=2)
    with httpx.Client(
        base_url=running["INGEST_URL"], timeout=10, headers={"X-API-Key": slow_key}
    ) as slow:
        codes = [slow.get(f"/v1/transactions/{uuid.uuid4()}").status_code for _ in range(8)]
        limited = slow.get(f"/v1/transactions/{uuid.uuid4()}")
    assert codes[:4] == [404] * 4  # a burst of twice the rate passes (unknown ids: 404)
    assert 429 in codes[4:] and limited.status_code == 429
    assert limited.json()["error"]["code"] == "RATE_LIMITED"

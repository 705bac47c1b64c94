"""Every bad request gets a 4xx JSON error with a stable code, and nothing is recorded or
published: the API records a request (and only then publishes it) under its Idempotency-Key,
so no row under the key proves nothing went out."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from analytics.auth import Role
from analytics.clients import create_api_key
from tests.helpers import accepted, make_client, new_wallet, sql, wait_final

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


# --- issue 10: the exact inputs that stopped the ledger or answered 500 ------------------


def _sent_as_json(api: httpx.Client, path: str, body: object, key: str) -> httpx.Response:
    """POST ``body`` with every non-ASCII character escaped, as the attack sent it (a lone
    surrogate can only travel as the JSON escape \\ud800)."""
    return api.post(
        path,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", "Idempotency-Key": key},
    )


def _nothing_recorded(running: dict, key: str) -> bool:
    rows = sql(
        running["DATABASE_URL"],
        "SELECT 1 FROM transaction_requests WHERE idempotency_key = %s",
        (key,),
    )
    return rows == []


ISSUE_CASES = [
    ("int past int64 in metadata", {"metadata": {"n": 10**30}}, "INVALID_METADATA"),
    ("int64 max plus one", {"metadata": {"n": 2**63}}, "INVALID_METADATA"),
    ("NUL in description", {"description": "rent\x00"}, "INVALID_TEXT"),
    ("NUL in a metadata key", {"metadata": {"k\x00": "v"}}, "INVALID_TEXT"),
    ("NUL in a metadata value", {"metadata": {"channel": "p\x00s"}}, "INVALID_TEXT"),
    ("NUL in external_reference_id", {"external_reference_id": "ref\x00"}, "INVALID_TEXT"),
    ("escape sequence in description", {"description": "\x1b[2J"}, "INVALID_TEXT"),
    ("lone surrogate in description", {"description": "\ud800"}, "INVALID_TEXT"),
    ("reserved metadata key", {"metadata": {"reversal_of": str(uuid.uuid4())}}, "INVALID_METADATA"),
    ("amount 1_0", {"amount": "1_0"}, "INVALID_AMOUNT"),
    ("amount 1_00", {"amount": "1_00"}, "INVALID_AMOUNT"),
    ("Arabic-Indic digits", {"amount": "\u0661\u0660"}, "INVALID_AMOUNT"),
    ("full-width digits", {"amount": "\uff11\uff10"}, "INVALID_AMOUNT"),
    ("amount +3.00", {"amount": "+3.00"}, "INVALID_AMOUNT"),
    ("amount with blanks", {"amount": " 2.00 "}, "INVALID_AMOUNT"),
    ("amount 1e1", {"amount": "1e1"}, "INVALID_AMOUNT"),
    ("id without hyphens", "no-hyphens", "INVALID_FIELD"),
]


@pytest.mark.parametrize(
    ("name", "change", "code"), ISSUE_CASES, ids=[case[0] for case in ISSUE_CASES]
)
def test_issue_inputs_are_refused_and_nothing_recorded(
    api: httpx.Client, running: dict, wallets: dict, name: str, change: object, code: str
) -> None:
    body = _payment(wallets["usd"], wallets["usd2"])
    if change == "no-hyphens":
        body["source_wallet_id"] = wallets["usd"].replace("-", "")
    else:
        body.update(change)  # type: ignore[arg-type]
    key = f"issue10-{uuid.uuid4()}"
    answer = _sent_as_json(api, "/v1/transactions", body, key)
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, code), answer.text
    assert _nothing_recorded(running, key)


def test_the_ledger_goes_on_after_the_attack(api: httpx.Client, wallets: dict) -> None:
    """The request that once stopped the ledger writer is refused, and money still moves."""
    attack = {
        "transaction_type": "DEPOSIT",
        "destination_wallet_id": wallets["usd2"],
        "amount": "1.00",
        "currency_code": "USD",
        "metadata": {"n": 1000000000000000000000000000000},
    }
    refused = _sent_as_json(api, "/v1/transactions", attack, str(uuid.uuid4()))
    assert refused.json()["error"]["code"] == "INVALID_METADATA"
    deposit = accepted(api, {**attack, "metadata": {"n": 2**63 - 1}})
    assert wait_final(api, deposit)["status"] == "COMPLETED"


def test_users_reversals_and_review_notes_refuse_nul(api: httpx.Client, running: dict) -> None:
    email = f"nul-{uuid.uuid4().hex[:12]}@example.com"
    user = {
        "email": email,
        "phone_number": "+15550001111",
        "password": "long enough!",
        "first_name": "N\x00",
        "last_name": "Ul",
        "date_of_birth": "1980-01-01",
    }
    answer = _sent_as_json(api, "/v1/users", user, str(uuid.uuid4()))
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "INVALID_TEXT")
    assert sql(running["DATABASE_URL"], "SELECT 1 FROM users WHERE email = %s", (email,)) == []

    key = f"issue10-{uuid.uuid4()}"
    path = f"/v1/transactions/{uuid.uuid4()}/reversals"
    answer = _sent_as_json(api, path, {"amount": "1.00", "description": "back\x00"}, key)
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "INVALID_TEXT")
    assert _nothing_recorded(running, key)

    analyst_key = make_client(running["DATABASE_URL"], role="analyst")
    with httpx.Client(
        base_url=running["INGEST_URL"], timeout=10, headers={"X-API-Key": analyst_key}
    ) as analyst:
        note = analyst.post(f"/v1/reviews/{uuid.uuid4()}/approve", json={"note": "ok\x00"})
    assert (note.status_code, note.json()["error"]["code"]) == (422, "INVALID_TEXT")


def test_reversal_amounts_use_the_one_grammar(
    api: httpx.Client, running: dict, wallets: dict
) -> None:
    deposit = accepted(
        api,
        {
            "transaction_type": "DEPOSIT",
            "destination_wallet_id": wallets["usd2"],
            "amount": "20.00",
            "currency_code": "USD",
        },
    )
    assert wait_final(api, deposit)["status"] == "COMPLETED"
    for amount in ("1_0", "+1.00", " 1.00 ", "1e1", "\uff11"):
        key = f"issue10-{uuid.uuid4()}"
        path = f"/v1/transactions/{deposit}/reversals"
        answer = _sent_as_json(api, path, {"amount": amount}, key)
        assert (answer.status_code, answer.json()["error"]["code"]) == (422, "INVALID_AMOUNT")
        assert _nothing_recorded(running, key)


def test_card_numbers_and_ibans_are_masked_before_storing_and_publishing(
    api: httpx.Client, running: dict, wallets: dict
) -> None:
    deposit = accepted(
        api,
        {
            "transaction_type": "DEPOSIT",
            "destination_wallet_id": wallets["usd2"],
            "amount": "1.00",
            "currency_code": "USD",
            "description": "refund to card 4111 1111 1111 1111",
            "external_reference_id": "5555555555554444",
            "metadata": {"iban": "DE89 3704 0044 0532 0130 00", "order": "1234567812345678"},
        },
    )
    # What was recorded is what was published (the record goes to Kafka as stored).
    (record,) = sql(
        running["DATABASE_URL"],
        "SELECT record FROM transaction_requests WHERE transaction_id = %s",
        (deposit,),
    )[0]
    assert record["description"] == "refund to card **** **** **** 1111"
    assert record["metadata"] == {
        "iban": "**** **** **** **** **30 00",
        "order": "1234567812345678",  # not Luhn-valid: an order number, kept
        "external_reference_id": "************4444",
    }
    assert "4111 1111" not in json.dumps(record) and "37040044" not in json.dumps(record)
    posted = wait_final(api, deposit)
    assert posted["status"] == "COMPLETED"
    assert posted["description"] == "refund to card **** **** **** 1111"


def test_analytics_refuses_years_it_cannot_hold(running: dict) -> None:
    key = create_api_key(
        running["DATABASE_URL"], name=f"bad-{uuid.uuid4().hex[:8]}", role=Role.ANALYST
    )
    with httpx.Client(
        base_url=running["ANALYTICS_URL"], timeout=30, headers={"X-API-Key": key}
    ) as reports:
        for params in (
            {"to": "0999-01-01T00:00Z"},
            {"from": "0001-01-01T00:00+01:00"},
            {"from": "2026-02-01T00:00Z", "to": "2026-01-01T00:00Z"},
        ):
            answer = reports.get("/v1/reports/volume", params=params)
            assert (answer.status_code, answer.json()["error"]["code"]) == (422, "INVALID_RANGE")
        for path in ("/v1/reports/latency", "/v1/reports/decline-reasons"):
            answer = reports.get(path, params={"to": "0999-01-01T00:00Z"})
            assert answer.json()["error"]["code"] == "INVALID_RANGE", path
        answer = reports.post("/v1/reports/volume")
        assert (answer.status_code, answer.json()["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize(
    ("method", "path", "content", "headers", "status", "code"),
    [
        ("GET", "/v1/nowhere", None, {}, 404, "NOT_FOUND"),
        ("DELETE", "/v1/transactions", None, {}, 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/v1/transactions", b"1" * 5000, {"content-type": "application/json"},
         400, "MALFORMED_JSON"),
        ("POST", "/v1/transactions", b'{"a": 1}', {"content-type": "text/plain"},
         415, "UNSUPPORTED_MEDIA_TYPE"),
        ("POST", "/v1/transactions", b'{"d": "' + b"x" * 200_000 + b'"}',
         {"content-type": "application/json"}, 413, "PAYLOAD_TOO_LARGE"),
    ],
)  # fmt: skip
def test_framework_errors_answer_the_envelope(
    api: httpx.Client,
    method: str,
    path: str,
    content: bytes | None,
    headers: dict,
    status: int,
    code: str,
) -> None:
    answer = api.request(
        method, path, content=content, headers={"Idempotency-Key": str(uuid.uuid4()), **headers}
    )
    assert answer.status_code == status, answer.text
    assert answer.json() == {"error": {"code": code, "message": answer.json()["error"]["message"]}}

"""The customers' side of the wallet end to end: a user's profile, addresses and wallets;
a wallet's statement (pages, filters, balance after, CSV); freezing, unfreezing and closing
a wallet (the stream refuses a frozen wallet's debits, WALLET_FROZEN, and still credits it)."""

from __future__ import annotations

import base64
import csv
import io
import uuid
from pathlib import Path
from typing import Any

import httpx

from domain.masking import luhn_valid
from domain.payment_methods import micro_deposits
from ingest_api.payment_vault import PaymentVault
from tests.helpers import (
    accepted,
    funded_wallet,
    make_client,
    new_user,
    new_wallet,
    sql,
    wait_final,
)


def _other_client(running: dict[str, str]) -> httpx.Client:
    key = make_client(running["DATABASE_URL"])
    return httpx.Client(base_url=running["INGEST_URL"], timeout=30, headers={"X-API-Key": key})


def _code(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["code"])


def test_user_profile_addresses_and_wallets(api: httpx.Client, running: dict[str, str]) -> None:
    user = new_user(api)
    wallet = new_wallet(api, user_id=user)
    got = api.get(f"/v1/users/{user}")
    assert got.status_code == 200, got.text
    assert got.json()["kyc_status"] == "PENDING" and "password_hash" not in got.json()
    changed = api.patch(f"/v1/users/{user}", json={"first_name": "Ada"})
    assert changed.status_code == 200 and changed.json()["first_name"] == "Ada"
    assert _code(api.patch(f"/v1/users/{user}", json={})) == "NOTHING_TO_CHANGE"
    taken = api.get(f"/v1/users/{new_user(api)}").json()["email"]
    clash = api.patch(f"/v1/users/{user}", json={"email": taken})
    assert (clash.status_code, _code(clash)) == (409, "USER_EXISTS")
    assert _code(api.get(f"/v1/users/{uuid.uuid4()}")) == "USER_NOT_FOUND"
    with _other_client(running) as other:
        assert _code(other.get(f"/v1/users/{user}")) == "USER_FORBIDDEN"
        assert _code(other.get(f"/v1/users/{user}/addresses")) == "USER_FORBIDDEN"

    address: dict[str, Any] = {
        "address_line1": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "postal_code": "62701",
        "country": "US",
    }
    home = api.post(f"/v1/users/{user}/addresses", json=address)
    assert home.status_code == 201, home.text
    work = api.post(
        f"/v1/users/{user}/addresses",
        json={**address, "address_type": "BUSINESS", "is_primary": True},
    )
    listed = api.get(f"/v1/users/{user}/addresses").json()
    assert [a["address_id"] for a in listed] == [
        work.json()["address_id"],
        home.json()["address_id"],
    ]
    home_id = home.json()["address_id"]
    primary = api.post(f"/v1/users/{user}/addresses/{home_id}/primary")
    assert primary.status_code == 200 and primary.json()["is_primary"]
    assert [a["is_primary"] for a in api.get(f"/v1/users/{user}/addresses").json()] == [True, False]
    assert api.delete(f"/v1/users/{user}/addresses/{home_id}").status_code == 204
    gone = api.delete(f"/v1/users/{user}/addresses/{home_id}")
    assert (gone.status_code, _code(gone)) == (404, "ADDRESS_NOT_FOUND")
    bad = api.post(f"/v1/users/{user}/addresses", json={**address, "country": "usa"})
    assert bad.status_code == 422

    wallets = api.get(f"/v1/users/{user}/wallets").json()
    assert [w["wallet_id"] for w in wallets] == [wallet]


def _pay(api: httpx.Client, wallet: str, amount: str) -> dict[str, Any]:
    body = {
        "transaction_type": "PAYMENT",
        "source_wallet_id": wallet,
        "destination_wallet_id": new_wallet(api),
        "amount": amount,
        "currency_code": "USD",
    }
    return wait_final(api, accepted(api, body))


def _deposit(
    api: httpx.Client, wallet: str, amount: str, method: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_type": "DEPOSIT",
        "destination_wallet_id": wallet,
        "amount": amount,
        "currency_code": "USD",
    }
    if method:
        body["metadata"] = {"payment_method_id": method}
    return wait_final(api, accepted(api, body))


def test_statement_pages_filters_balance_after_and_csv(api: httpx.Client) -> None:
    wallet = funded_wallet(api, "100.00")  # a deposit of 100.01, a transfer of 0.01
    assert _pay(api, wallet, "10.00")["status"] == "COMPLETED"
    # funded_wallet may have retried its transfer (a FAILED one): completed ones only here.
    done = {"status": ["COMPLETED"]}
    first = api.get(f"/v1/wallets/{wallet}/transactions", params={"limit": 2, **done})
    assert first.status_code == 200, first.text
    entries = first.json()["entries"]
    assert [e["transaction_type"] for e in entries] == ["PAYMENT", "TRANSFER"]
    assert entries[0]["direction"] == "DEBIT" and entries[0]["status"] == "COMPLETED"
    # E2E fees: a payment costs 1% (0.10 here); the balance after says what is left.
    assert entries[0]["balance_after"] == "89.9000"
    assert entries[1]["balance_after"] == "100.0000"
    rest = api.get(
        f"/v1/wallets/{wallet}/transactions",
        params={"cursor": first.json()["next_cursor"], **done},
    ).json()
    assert [e["transaction_type"] for e in rest["entries"]] == ["DEPOSIT"]
    assert rest["entries"][0]["direction"] == "CREDIT" and rest["next_cursor"] is None
    deposits = api.get(
        f"/v1/wallets/{wallet}/transactions", params={"transaction_type": ["DEPOSIT"]}
    ).json()
    assert [e["balance_after"] for e in deposits["entries"]] == ["100.0100"]
    failed = api.get(f"/v1/wallets/{wallet}/transactions", params={"status": ["FAILED"]})
    assert all(e["balance_after"] is None for e in failed.json()["entries"])
    assert _code(api.get(f"/v1/wallets/{wallet}/transactions", params={"cursor": "x!"})) == (
        "INVALID_CURSOR"
    )
    exported = api.get(f"/v1/wallets/{wallet}/transactions.csv", params=done)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["transaction_type"] for r in rows] == ["PAYMENT", "TRANSFER", "DEPOSIT"]
    assert rows[0]["balance_after"] == "89.9000"


def test_frozen_wallet_refuses_debits_and_takes_credits(
    api: httpx.Client, running: dict[str, str]
) -> None:
    wallet = funded_wallet(api, "50.00")
    frozen = api.post(
        f"/v1/wallets/{wallet}/status", json={"status": "FROZEN", "reason": "lost phone"}
    )
    assert frozen.status_code == 200, frozen.text
    assert (frozen.json()["status"], frozen.json()["previous_status"]) == ("FROZEN", "ACTIVE")
    refused = _pay(api, wallet, "5.00")
    assert (refused["status"], refused["failure_code"]) == ("FAILED", "WALLET_FROZEN")
    assert _deposit(api, wallet, "7.00")["status"] == "COMPLETED"
    again = api.post(f"/v1/wallets/{wallet}/status", json={"status": "FROZEN", "reason": "retry"})
    assert again.json()["reason"] == "lost phone"  # a repeat changes nothing
    with _other_client(running) as other:
        foreign = other.post(
            f"/v1/wallets/{wallet}/status", json={"status": "ACTIVE", "reason": "x"}
        )
        assert (foreign.status_code, _code(foreign)) == (403, "WALLET_FORBIDDEN")
    not_empty = api.post(f"/v1/wallets/{wallet}/status", json={"status": "CLOSED", "reason": "x"})
    assert (not_empty.status_code, _code(not_empty)) == (422, "WALLET_NOT_EMPTY")
    active = api.post(f"/v1/wallets/{wallet}/status", json={"status": "ACTIVE", "reason": "found"})
    assert active.status_code == 200
    assert _pay(api, wallet, "5.00")["status"] == "COMPLETED"
    trail = api.get(f"/v1/wallets/{wallet}/status-changes").json()
    assert [(c["to_status"], c["reason"]) for c in trail] == [
        ("ACTIVE", "found"),
        ("FROZEN", "lost phone"),
    ]

    empty = new_wallet(api)
    closed = api.post(f"/v1/wallets/{empty}/status", json={"status": "CLOSED", "reason": "bye"})
    assert closed.status_code == 200, closed.text
    reopen = api.post(f"/v1/wallets/{empty}/status", json={"status": "ACTIVE", "reason": "x"})
    assert _code(reopen) == "WALLET_CLOSED"
    body = {
        "transaction_type": "DEPOSIT",
        "destination_wallet_id": empty,
        "amount": "1.00",
        "currency_code": "USD",
    }
    late = api.post("/v1/transactions", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert late.status_code in (202, 422)  # the API's wallet cache may hold it a few seconds
    if late.status_code == 202:
        assert wait_final(api, late.json()["transaction_id"])["status"] == "FAILED"


#: Values that must never reach a log, a Kafka record or ClickHouse (checked last).
SECRETS: list[str] = []


def _document(marker: str) -> str:
    data = b"%PDF-1.4\n" + marker.encode() + b"\n%%EOF\n"
    encoded = base64.b64encode(data).decode()
    SECRETS.extend([marker, encoded])
    return encoded


def _upload(api: httpx.Client, user: str, content: str, **fields: Any) -> httpx.Response:
    number = f"P{uuid.uuid4().hex[:12].upper()}"
    SECRETS.append(number)
    body = {
        "document_type": "PASSPORT",
        "document_number": number,
        "issuing_country": "US",
        "issue_date": "2020-01-01",
        "expiry_date": "2035-01-01",
        "content_base64": content,
        **fields,
    }
    return api.post(f"/v1/users/{user}/kyc-documents", json=body)


def _compliance(running: dict[str, str]) -> httpx.Client:
    key = make_client(running["DATABASE_URL"], role="compliance")
    return httpx.Client(base_url=running["INGEST_URL"], timeout=30, headers={"X-API-Key": key})


def _withdraw(
    api: httpx.Client, wallet: str, amount: str, method: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_type": "WITHDRAWAL",
        "source_wallet_id": wallet,
        "amount": amount,
        "currency_code": "USD",
    }
    if method:
        body["metadata"] = {"payment_method_id": method}
    return wait_final(api, accepted(api, body))


def test_kyc_documents_and_the_verified_limits(api: httpx.Client, running: dict[str, str]) -> None:
    user = new_user(api)
    wallet = new_wallet(api, user_id=user)
    assert _deposit(api, wallet, "3000.00")["status"] == "COMPLETED"
    marker = f"secret-document-{uuid.uuid4().hex}"
    uploaded = _upload(api, user, _document(marker))
    assert uploaded.status_code == 201, uploaded.text
    document = uploaded.json()
    assert (document["verification_status"], document["content_type"]) == (
        "PENDING",
        "application/pdf",
    )
    assert "document_number" not in document
    png_named_pdf = base64.b64encode(b"GIF89a not a pdf").decode()
    refused = _upload(api, user, png_named_pdf)
    assert (refused.status_code, _code(refused)) == (415, "UNSUPPORTED_DOCUMENT_TYPE")
    assert marker not in refused.text
    big = base64.b64encode(b"%PDF-" + b"0" * (10 * 1024 * 1024)).decode()
    assert _code(_upload(api, user, big)) == "DOCUMENT_TOO_LARGE"
    expired = _upload(api, user, _document("x" + uuid.uuid4().hex), expiry_date="2021-01-01")
    assert _code(expired) == "DOCUMENT_EXPIRED"
    content_path = f"/v1/kyc-documents/{document['document_id']}/content"
    customer = api.get(content_path)
    assert (customer.status_code, _code(customer)) == (403, "COMPLIANCE_ONLY")

    # PENDING: at most 2,000.00 a day withdrawn (streams.settings DEFAULT_LIMITS_JSON).
    too_much = _withdraw(api, wallet, "2500.00")
    assert too_much["failure_code"] == "LIMIT_EXCEEDED", too_much
    with _compliance(running) as compliance:
        queue = compliance.get("/v1/kyc-documents", params={"limit": 200}).json()
        assert document["document_id"] in [d["document_id"] for d in queue]
        got = compliance.get(content_path)
        assert got.status_code == 200 and marker.encode() in got.content
        assert got.headers["content-type"] == "application/pdf"
        no_reason = compliance.post(f"/v1/kyc-documents/{document['document_id']}/reject", json={})
        assert _code(no_reason) == "REASON_REQUIRED"
        approved = compliance.post(f"/v1/kyc-documents/{document['document_id']}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["kyc_status"] == "VERIFIED"
        twice = compliance.post(f"/v1/kyc-documents/{document['document_id']}/approve")
        assert (twice.status_code, _code(twice)) == (409, "DOCUMENT_DECIDED")
        assert _code(compliance.get(f"/v1/users/{user}")) == "ROLE_FORBIDDEN"
    assert api.get(f"/v1/users/{user}").json()["kyc_status"] == "VERIFIED"
    # The stream has the VERIFIED status before this request: the PENDING limit is gone.
    assert _withdraw(api, wallet, "2500.00")["status"] == "COMPLETED"

    rejected_user = new_user(api)
    payer = new_wallet(api, user_id=rejected_user)
    assert _deposit(api, payer, "10.00")["status"] == "COMPLETED"
    second = _upload(api, rejected_user, _document(f"secret-document-{uuid.uuid4().hex}")).json()
    with _compliance(running) as compliance:
        rejected = compliance.post(
            f"/v1/kyc-documents/{second['document_id']}/reject", json={"reason": "blurred photo"}
        )
        assert rejected.json()["kyc_status"] == "REJECTED", rejected.text
        assert rejected.json()["document"]["verification_notes"] == "blurred photo"
    # REJECTED: nothing may be paid out (0.00 a day).
    assert _pay(api, payer, "1.00")["failure_code"] == "LIMIT_EXCEEDED"


def test_devices_register_list_revoke(api: httpx.Client, running: dict[str, str]) -> None:
    user = new_user(api)
    new_wallet(api, user_id=user)
    phone = api.post(
        f"/v1/users/{user}/devices",
        json={"device_type": "IOS", "device_token": f"tok-{uuid.uuid4().hex}", "device_name": "A"},
    )
    assert phone.status_code == 201, phone.text
    assert "device_token" not in phone.json() and phone.json()["status"] == "ACTIVE"
    device = phone.json()["device_id"]
    bad = api.post(f"/v1/users/{user}/devices", json={"device_type": "NOKIA"})
    assert bad.status_code == 422
    revoked = api.delete(f"/v1/users/{user}/devices/{device}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "REVOKED"
    listed = api.get(f"/v1/users/{user}/devices").json()
    assert [(d["device_id"], d["status"]) for d in listed] == [(device, "REVOKED")]
    missing = api.delete(f"/v1/users/{user}/devices/{uuid.uuid4()}")
    assert _code(missing) == "DEVICE_NOT_FOUND"
    with _other_client(running) as other:
        assert _code(other.get(f"/v1/users/{user}/devices")) == "USER_FORBIDDEN"


def _card_number() -> str:
    """A fresh Visa number that passes Luhn (unique per run: grepped for afterwards)."""
    body = "4" + "".join(str(uuid.uuid4().int % 10**14).zfill(14))
    for check in "0123456789":
        if luhn_valid(body + check):
            SECRETS.append(body + check)
            return body + check
    raise AssertionError("no check digit")


def test_cards_and_bank_accounts(api: httpx.Client, running: dict[str, str]) -> None:
    user, other_user = new_user(api), new_user(api)
    wallet = new_wallet(api, user_id=user)  # before the methods: their sets reach it
    number = _card_number()
    card = {
        "card_number": number,
        "cvv": "737",
        "expiry_month": 12,
        "expiry_year": 2031,
        "card_holder_name": "Test User",
    }
    added = api.post(f"/v1/users/{user}/payment-methods/cards", json=card)
    assert added.status_code == 201, added.text
    method = added.json()
    assert (method["network"], method["last_four"], method["is_verified"]) == (
        "VISA",
        number[-4:],
        True,
    )
    assert number not in added.text and "737" not in added.text
    from_card = _deposit(api, wallet, "50.00", method["payment_method_id"])
    assert from_card["status"] == "COMPLETED", from_card
    again = api.post(f"/v1/users/{user}/payment-methods/cards", json=card)
    assert _code(again) == "CARD_EXISTS"
    shared = api.post(f"/v1/users/{other_user}/payment-methods/cards", json=card).json()
    assert shared["shared_card_users"] == 1  # the same card on two users: a fraud signal
    declined = api.post(
        f"/v1/users/{user}/payment-methods/cards",
        json={**card, "card_number": _card_number(), "cvv": "000"},
    )
    assert (declined.status_code, _code(declined)) == (422, "CARD_DECLINED")
    bad = api.post(
        f"/v1/users/{user}/payment-methods/cards", json={**card, "card_number": number[:-1] + "x"}
    )
    assert bad.status_code == 422 and number[:-1] not in bad.text
    wrong_luhn = number[:-1] + str((int(number[-1]) + 1) % 10)
    refused = api.post(
        f"/v1/users/{user}/payment-methods/cards", json={**card, "card_number": wrong_luhn}
    )
    assert _code(refused) == "INVALID_CARD_NUMBER" and wrong_luhn not in refused.text

    account_number = str(uuid.uuid4().int % 10**12).zfill(12)
    SECRETS.append(account_number)
    account = {
        "account_holder_name": "Test User",
        "bank_name": "First Test Bank",
        "account_number": account_number,
        "routing_number": "021000021",
    }
    routing = api.post(
        f"/v1/users/{user}/payment-methods/bank-accounts",
        json={**account, "routing_number": "021000022"},
    )
    assert _code(routing) == "INVALID_ROUTING_NUMBER"
    bank = api.post(f"/v1/users/{user}/payment-methods/bank-accounts", json=account)
    assert bank.status_code == 201, bank.text
    assert (bank.json()["status"], bank.json()["last_four"]) == ("INACTIVE", account_number[-4:])
    stored = sql(
        running["DATABASE_URL"],
        "SELECT account_number FROM bank_accounts WHERE payment_method_id = %s",
        (bank.json()["payment_method_id"],),
    )
    assert account_number not in stored[0][0]
    bank_id = bank.json()["payment_method_id"]
    unverified = _withdraw(api, wallet, "5.00", bank_id)
    assert unverified["failure_code"] == "PAYMENT_METHOD_INVALID", unverified
    assert _withdraw(api, wallet, "5.00", method["payment_method_id"])["failure_code"] == (
        "PAYMENT_METHOD_INVALID"  # a withdrawal goes to a bank account, not a card
    )
    verify = f"/v1/users/{user}/payment-methods/{bank.json()['payment_method_id']}/verify"
    wrong = api.post(verify, json={"amounts": ["1.00", "1.00"]})  # never sent: at most 0.99
    assert _code(wrong) == "VERIFICATION_FAILED"
    methods = {
        m["payment_method_id"]: m for m in api.get(f"/v1/users/{user}/payment-methods").json()
    }
    assert methods[bank.json()["payment_method_id"]]["is_verified"] is False
    # The amounts the simulated gateway sent, as the customer reads them on the statement.
    vault = PaymentVault.load(running["PAYMENT_KEYS_FILE"])
    sent = micro_deposits(vault.hmac_key, bank.json()["payment_method_id"])
    confirmed = api.post(verify, json={"amounts": [str(a) for a in reversed(sent)]})
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["status"], confirmed.json()["is_verified"]) == ("ACTIVE", True)
    assert _code(api.post(verify, json={"amounts": ["0.01", "0.02"]})) == "ALREADY_VERIFIED"
    assert _withdraw(api, wallet, "5.00", bank_id)["status"] == "COMPLETED"
    removed = api.delete(f"/v1/users/{user}/payment-methods/{method['payment_method_id']}")
    assert removed.status_code == 204
    with _other_client(running) as other:
        assert _code(other.get(f"/v1/users/{user}/payment-methods")) == "USER_FORBIDDEN"


def test_no_secret_in_logs_kafka_or_clickhouse(stack_dir: Path, running: dict[str, str]) -> None:
    """Run last in this module: every document number and content used above is absent
    from every file of the stack but PostgreSQL's (which keeps the document numbers) and
    the document store (which keeps the files)."""
    assert SECRETS, "the tests above used no secret"
    kept = {stack_dir / "postgres", stack_dir / "kyc-documents"}
    needles = [secret.encode() for secret in SECRETS] + [b'"cvv"']
    for path in stack_dir.rglob("*"):
        if not path.is_file() or any(parent in kept for parent in path.parents):
            continue
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{path} holds a secret"

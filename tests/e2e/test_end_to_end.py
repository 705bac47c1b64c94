"""The whole system on real components: API → Kafka → quix-streams → PostgreSQL ledger → chDB.

Each test drives the public HTTP API only and checks what a user would: statuses, balances,
and what the ledger and ClickHouse hold afterwards.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from analytics.auth import Role
from analytics.clients import create_api_key
from tests.helpers import (
    accepted,
    balance,
    make_client,
    new_wallet,
    once_credited,
    sql,
    submit,
    wait_final,
)

pytestmark = pytest.mark.e2e


def test_deposit_transfer_pay_withdraw_and_overdraw(api: httpx.Client, running: dict) -> None:
    alice, bob, shop = new_wallet(api), new_wallet(api), new_wallet(api)
    deposit = accepted(
        api,
        {
            "transaction_type": "DEPOSIT",
            "destination_wallet_id": alice,
            "amount": "100.00",
            "currency_code": "USD",
        },
    )
    assert wait_final(api, deposit)["status"] == "COMPLETED"
    transferred = once_credited(
        api,
        lambda: accepted(
            api,
            {
                "transaction_type": "TRANSFER",
                "source_wallet_id": alice,
                "destination_wallet_id": bob,
                "amount": "30.00",
                "currency_code": "USD",
                "description": "rent share",
            },
        ),
    )
    transfer = str(transferred["transaction_id"])
    payment = accepted(
        api,
        {
            "transaction_type": "PAYMENT",
            "source_wallet_id": alice,
            "destination_wallet_id": shop,
            "amount": "20.00",
            "currency_code": "USD",
            "metadata": {"channel": "POS", "terminal_id": "T-1"},
        },
    )
    withdrawal = accepted(
        api,
        {
            "transaction_type": "WITHDRAWAL",
            "source_wallet_id": alice,
            "amount": "10.00",
            "currency_code": "USD",
        },
    )
    overdraft = accepted(
        api,
        {
            "transaction_type": "PAYMENT",
            "source_wallet_id": alice,
            "destination_wallet_id": shop,
            "amount": "1000.00",
            "currency_code": "USD",
        },
    )
    results = {t: wait_final(api, t) for t in (payment, withdrawal, overdraft)}
    results[transfer] = transferred

    assert results[transfer]["status"] == "COMPLETED"
    assert results[payment]["status"] == "COMPLETED"
    assert results[payment]["fee_amount"] == "0.2000"  # 100 basis points of 20.00
    assert results[payment]["total_amount"] == "20.2000"
    assert results[withdrawal]["status"] == "COMPLETED"
    assert results[withdrawal]["fee_amount"] == "1.0000"
    assert results[overdraft]["status"] == "FAILED"
    assert results[overdraft]["failure_code"] == "INSUFFICIENT_FUNDS"
    assert [e["event_type"] for e in results[transfer]["events"]] == [
        "INITIATED",
        "AUTHORIZED",
        "SETTLED",
    ]
    assert [e["event_type"] for e in results[overdraft]["events"]] == ["INITIATED", "FAILED"]

    # 100 - 30 - 20.20 - 11.00 = 38.80; the overdraft moved nothing.
    assert balance(api, alice) == Decimal("38.80")
    assert balance(api, bob) == Decimal("30.00")
    assert balance(api, shop) == Decimal("20.00")

    db = running["DATABASE_URL"]
    ids = [deposit, transfer, payment, withdrawal, overdraft]
    sums = sql(
        db,
        """SELECT transaction_id,
                             sum(CASE entry_type WHEN 'DEBIT' THEN amount ELSE 0 END),
                             sum(CASE entry_type WHEN 'CREDIT' THEN amount ELSE 0 END), count(*)
                        FROM ledger_entries WHERE transaction_id = ANY(%s::uuid[])
                       GROUP BY transaction_id""",
        (ids,),
    )
    assert len(sums) == 4  # the overdraft has no entries
    assert all(debit == credit for _t, debit, credit, _n in sums)
    assert {str(t): n for t, _d, _c, n in sums}[payment] == 3  # payer, payee, fee revenue
    totals = sql(
        db,
        """SELECT sum(total) FROM (
                            SELECT b.available_balance + b.reserved_balance AS total
                              FROM wallet_balances b JOIN wallets w USING (wallet_id)
                             WHERE w.currency_code = 'USD'
                            UNION ALL SELECT balance FROM system_balances
                             WHERE currency_code = 'USD') t""",
    )
    assert totals[0][0] == 0  # the books balance across every account

    # ClickHouse: the analytics service has every transaction's events within seconds.
    analyst_key = create_api_key(db, name=f"e2e-{uuid.uuid4().hex[:8]}", role=Role.ANALYST)
    with httpx.Client(
        base_url=running["ANALYTICS_URL"], timeout=10, headers={"X-API-Key": analyst_key}
    ) as analytics:
        deadline = time.monotonic() + 15
        kinds: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            kinds = {
                t: {
                    e["event_kind"]
                    for e in analytics.get(f"/v1/reports/transactions/{t}").json()["events"]
                }
                for t in ids
            }
            if all("posted" in kinds[t] for t in ids[:4]) and "rejected" in kinds[overdraft]:
                break
            time.sleep(0.5)
    assert kinds[transfer] == {"requested", "approved", "posted"}
    assert kinds[overdraft] == {"requested", "rejected"}


def test_transfer_credit_becomes_spendable(api: httpx.Client) -> None:
    """A credit is spendable only after the ledger posted it, and then it is."""
    alice, bob, carol = new_wallet(api), new_wallet(api), new_wallet(api)
    wait_final(
        api,
        accepted(
            api,
            {
                "transaction_type": "DEPOSIT",
                "destination_wallet_id": alice,
                "amount": "50.00",
                "currency_code": "USD",
            },
        ),
    )
    sent = once_credited(
        api,
        lambda: accepted(
            api,
            {
                "transaction_type": "TRANSFER",
                "source_wallet_id": alice,
                "destination_wallet_id": bob,
                "amount": "50.00",
                "currency_code": "USD",
            },
        ),
    )
    assert sent["status"] == "COMPLETED", sent
    deadline = time.monotonic() + 30
    status = "FAILED"
    while time.monotonic() < deadline and status != "COMPLETED":
        # Bob's credit travels ledger → stream; until it lands, Bob's spend is refused.
        status = wait_final(
            api,
            accepted(
                api,
                {
                    "transaction_type": "TRANSFER",
                    "source_wallet_id": bob,
                    "destination_wallet_id": carol,
                    "amount": "50.00",
                    "currency_code": "USD",
                },
            ),
        )["status"]
    assert status == "COMPLETED"
    assert balance(api, bob) == Decimal("0.00")
    assert balance(api, carol) == Decimal("50.00")


def test_idempotency_key_replays_the_first_answer(api: httpx.Client) -> None:
    wallet = new_wallet(api)
    body = {
        "transaction_type": "DEPOSIT",
        "destination_wallet_id": wallet,
        "amount": "5.00",
        "currency_code": "USD",
    }
    key = str(uuid.uuid4())
    first, again = submit(api, body, key), submit(api, body, key)
    assert first.status_code == again.status_code == 202
    assert first.json()["transaction_id"] == again.json()["transaction_id"]
    wait_final(api, first.json()["transaction_id"])
    assert balance(api, wallet) == Decimal("5.00")  # moved once
    changed = submit(api, {**body, "amount": "6.00"}, key)
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_other_clients_cannot_touch_wallets_or_see_transactions(
    api: httpx.Client, running: dict
) -> None:
    mine = new_wallet(api)
    deposit = accepted(
        api,
        {
            "transaction_type": "DEPOSIT",
            "destination_wallet_id": mine,
            "amount": "10.00",
            "currency_code": "USD",
        },
    )
    wait_final(api, deposit)
    other_key = make_client(running["DATABASE_URL"])
    with httpx.Client(
        base_url=running["INGEST_URL"], timeout=10, headers={"X-API-Key": other_key}
    ) as other:
        theirs = new_wallet(other)
        steal = submit(
            other,
            {
                "transaction_type": "TRANSFER",
                "source_wallet_id": mine,
                "destination_wallet_id": theirs,
                "amount": "10.00",
                "currency_code": "USD",
            },
        )
        assert steal.status_code == 403
        assert steal.json()["error"]["code"] == "WALLET_FORBIDDEN"
        assert other.get(f"/v1/wallets/{mine}/balance").status_code == 403
        assert other.get(f"/v1/transactions/{deposit}").status_code == 404
        # Paying INTO someone else's wallet is allowed (a transfer's destination).
        wait_final(
            other,
            accepted(
                other,
                {
                    "transaction_type": "DEPOSIT",
                    "destination_wallet_id": theirs,
                    "amount": "3.00",
                    "currency_code": "USD",
                },
            ),
        )
        gift = once_credited(
            other,
            lambda: accepted(
                other,
                {
                    "transaction_type": "TRANSFER",
                    "source_wallet_id": theirs,
                    "destination_wallet_id": mine,
                    "amount": "3.00",
                    "currency_code": "USD",
                },
            ),
        )
        assert gift["status"] == "COMPLETED"
    assert balance(api, mine) == Decimal("13.00")  # 10 deposited + the 3.00 gift


def _read_dead_letters(bootstrap: str, topic: str, key: bytes, timeout_s: float = 30) -> dict:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if not message.error() and message.key() == key:
                    return {k: v.decode() for k, v in message.headers() or []}
    finally:
        consumer.close()
    raise AssertionError(f"no dead letter with key {key!r} on {topic}")


@pytest.mark.parametrize(
    "topic", ["wallet.commands", "transactions.requested", "ledger.commands", "ledger.events"]
)
def test_undecodable_records_go_to_the_dead_letter_topic(running: dict, topic: str) -> None:
    key = str(uuid.uuid4()).encode()
    producer = Producer({"bootstrap.servers": running["KAFKA_BOOTSTRAP"]})
    producer.produce(topic, key=key, value=b'{"kind": "TransactionRequested", "amount": 1.5}')
    assert producer.flush(10) == 0
    headers = _read_dead_letters(running["KAFKA_BOOTSTRAP"], f"{topic}.dlq", key)
    assert headers["dlq.topic"] == topic
    assert headers["dlq.reason"]  # says which field broke


def test_owner_grants_a_partner_access_to_one_wallet(api: httpx.Client, running: dict) -> None:
    wallet, other_wallet = new_wallet(api), new_wallet(api)
    wait_final(
        api,
        accepted(
            api,
            {
                "transaction_type": "DEPOSIT",
                "destination_wallet_id": wallet,
                "amount": "8.00",
                "currency_code": "USD",
            },
        ),
    )
    partner_key = make_client(running["DATABASE_URL"])
    with httpx.Client(
        base_url=running["INGEST_URL"], timeout=10, headers={"X-API-Key": partner_key}
    ) as partner:
        partner_id = partner.get("/v1/me").json()["client_id"]
        pay = {
            "transaction_type": "PAYMENT",
            "source_wallet_id": wallet,
            "amount": "2.00",
            "currency_code": "USD",
        }
        assert submit(partner, pay).status_code == 403  # not yet granted
        refused = partner.post(f"/v1/wallets/{wallet}/grants", json={"client_id": partner_id})
        assert refused.status_code == 403  # only the owner grants
        granted = api.post(f"/v1/wallets/{wallet}/grants", json={"client_id": partner_id})
        assert granted.status_code == 201, granted.text
        assert wait_final(partner, accepted(partner, pay))["status"] == "COMPLETED"
        assert partner.get(f"/v1/wallets/{other_wallet}/balance").status_code == 403
    assert (
        api.post(f"/v1/wallets/{wallet}/grants", json={"client_id": str(uuid.uuid4())}).json()[
            "error"
        ]["code"]
        == "CLIENT_NOT_FOUND"
    )

"""Two-phase PAYMENT and WITHDRAWAL through every service: the ledger holds, the simulated
gateway answers on gateway.results, the ledger applies the answer (or the expiry) and the
stream settles or releases its own hold. The gateway is steered by metadata
``gateway_outcome`` (decline, void, capture:<amount>, none)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import E2E_HOLD_TIMEOUT_MS
from tests.helpers import accepted, balance, funded_wallet, new_wallet, sql, wait_final

pytestmark = pytest.mark.e2e


def pay(api: httpx.Client, source: str, amount: str, outcome: str | None, **extra: Any) -> str:
    body: dict[str, Any] = {
        "transaction_type": "PAYMENT",
        "source_wallet_id": source,
        "amount": amount,
        "currency_code": "USD",
        **extra,
    }
    if outcome is not None:
        body["metadata"] = {"gateway_outcome": outcome}
    return accepted(api, body)


def balances(api: httpx.Client, wallet: str) -> tuple[Decimal, Decimal]:
    answer = api.get(f"/v1/wallets/{wallet}/balance").json()
    return Decimal(answer["available"]), Decimal(answer["reserved"])


def entries(running: dict, transaction_id: str) -> list[tuple]:
    return sql(
        running["DATABASE_URL"],
        """SELECT wallet_id::text, entry_type, amount FROM ledger_entries
            WHERE transaction_id = %s ORDER BY entry_type, amount""",
        (transaction_id,),
    )


def test_payment_is_held_then_captured_by_the_gateway(api: httpx.Client, running: dict) -> None:
    alice = funded_wallet(api)
    payment = pay(api, alice, "20.00", None)  # 1% fee: 20.20 held, then captured
    final = wait_final(api, payment)
    assert final["status"] == "COMPLETED"
    assert [e["event_type"] for e in final["events"]] == ["INITIATED", "AUTHORIZED", "SETTLED"]
    assert final["events"][1]["event_status"] == "PENDING"
    assert final["events"][1]["event_data"]["held"] == "20.2000"
    assert balances(api, alice) == (Decimal("79.80"), Decimal(0))


def test_declined_payment_releases_the_hold(api: httpx.Client, running: dict) -> None:
    alice = funded_wallet(api)
    payment = pay(api, alice, "30.00", "decline")
    final = wait_final(api, payment)
    assert (final["status"], final["failure_code"]) == ("FAILED", "GATEWAY_DECLINED")
    assert [e["event_type"] for e in final["events"]] == ["INITIATED", "AUTHORIZED", "FAILED"]
    assert balances(api, alice) == (Decimal("100.00"), Decimal(0))
    assert entries(running, payment) == []
    # The stream released its hold too: the whole balance can be spent again.
    again = pay(api, alice, "99.00", None)
    assert wait_final(api, again)["status"] == "COMPLETED"


def test_partial_capture_posts_part_and_releases_the_rest(api: httpx.Client, running: dict) -> None:
    alice, shop = funded_wallet(api), new_wallet(api)
    payment = pay(api, alice, "50.00", "capture:20.00", destination_wallet_id=shop)
    final = wait_final(api, payment)
    assert final["status"] == "COMPLETED"
    settled = final["events"][-1]
    assert settled["event_type"] == "SETTLED"
    assert settled["event_data"]["captured"] == "20.0000"
    assert settled["event_data"]["released"] == "30.0000"
    # The fee (1% of the authorised 50.00) is charged; only 20.00 reaches the shop.
    assert balances(api, alice) == (Decimal("79.50"), Decimal(0))
    assert balance(api, shop) == Decimal("20.00")
    assert [(t, a) for _w, t, a in entries(running, payment)] == [
        ("CREDIT", Decimal("0.5000")),
        ("CREDIT", Decimal("20.0000")),
        ("DEBIT", Decimal("20.5000")),
    ]
    # The stream settled 20.50 and gave the rest back: 79.50 can be spent, not more.
    assert wait_final(api, pay(api, alice, "78.71", None))["status"] == "COMPLETED"


def test_voided_payment_releases_everything(api: httpx.Client, running: dict) -> None:
    alice = funded_wallet(api)
    withdrawal = accepted(
        api,
        {
            "transaction_type": "WITHDRAWAL",
            "source_wallet_id": alice,
            "amount": "40.00",
            "currency_code": "USD",
            "metadata": {"gateway_outcome": "void"},
        },
    )
    final = wait_final(api, withdrawal)
    assert (final["status"], final["failure_code"]) == ("FAILED", "VOIDED")
    assert balances(api, alice) == (Decimal("100.00"), Decimal(0))


def test_unanswered_hold_shows_reserved_then_expires(api: httpx.Client, running: dict) -> None:
    alice = funded_wallet(api)
    payment = pay(api, alice, "10.00", "none")
    deadline = time.monotonic() + 10
    while api.get(f"/v1/transactions/{payment}").json()["events"] == []:
        assert time.monotonic() < deadline, "the ledger never held the payment"
        time.sleep(0.05)
    pending = api.get(f"/v1/transactions/{payment}").json()
    assert pending["status"] == "PENDING"
    assert [e["event_type"] for e in pending["events"]] == ["INITIATED", "AUTHORIZED"]
    assert balances(api, alice) == (Decimal("89.90"), Decimal("10.10"))
    final = wait_final(api, payment, timeout_s=E2E_HOLD_TIMEOUT_MS / 1000 + 30)
    assert (final["status"], final["failure_code"]) == ("FAILED", "HOLD_EXPIRED")
    assert balances(api, alice) == (Decimal("100.00"), Decimal(0))
    holds = sql(
        running["DATABASE_URL"],
        "SELECT outcome, closed_at IS NOT NULL FROM ledger_holds WHERE transaction_id = %s",
        (payment,),
    )
    assert holds == [("EXPIRED", True)]

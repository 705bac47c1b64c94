"""A schema fuzz of both HTTP APIs against the running services (schemathesis).

For every operation in each API's ``/openapi.json`` it sends requests that fit the schema
(positive) and requests that break it (negative: wrong types, missing fields, values out of
their patterns) to the real ingest and analytics services. It fails on any 5xx and on any
error answer that is not the documented ``{"error": {"code", "message"}}`` envelope.

The run is bounded and repeatable: ``FUZZ_EXAMPLES`` examples per operation and mode (set
``WALLETPIPE_FUZZ_EXAMPLES`` for a longer hunt), derandomized, no shrinking (a finding is
reported as sent), so it takes well under two minutes on a quiet machine.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from analytics.auth import Role
from analytics.clients import create_api_key
from tests.helpers import accepted, funded_wallet, make_client, new_wallet, wait_final

pytestmark = pytest.mark.e2e

FUZZ_EXAMPLES = int(os.environ.get("WALLETPIPE_FUZZ_EXAMPLES", "12"))
FINDINGS_SHOWN_MAX = 20
REQUEST_TIMEOUT_S = 30
DEPOSIT = {"transaction_type": "DEPOSIT", "amount": "1.00", "currency_code": "USD"}


def _envelope_problem(response: requests.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return "not JSON"
    error = body.get("error") if isinstance(body, dict) else None
    if (
        not isinstance(error, dict)
        or set(body) != {"error"}
        or not isinstance(error.get("code"), str)
        or not isinstance(error.get("message"), str)
    ):
        return "not the error envelope"
    return None


class Fuzz:
    """The requests sent to one API and what was wrong with their answers."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        aim: Callable[[schemathesis.Case, int], None] | None = None,
    ) -> None:
        self.base_url = base_url
        self.headers = headers
        #: Called on each positive example with its number: may point it at real resources.
        self.aim = aim
        self.session = requests.Session()
        self.sent = 0
        self.findings: list[str] = []
        #: (operation, status) → answers: printed, so a run shows how deep the fuzz got.
        self.statuses: Counter[tuple[str, int]] = Counter()

    def run(self) -> None:
        schema = schemathesis.openapi.from_url(f"{self.base_url}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                self.examples(operation, mode)

    def examples(self, operation: Any, mode: GenerationMode) -> None:
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case: schemathesis.Case) -> None:
            self.send(case, mode)

        try:
            send()
        except Unsatisfiable:
            pass  # nothing to break in this operation's schema (GET /health, negative)

    def send(self, case: schemathesis.Case, mode: GenerationMode) -> None:
        headers = dict(self.headers)
        sent_keys = {name.lower() for name in case.headers or {}}
        if mode is GenerationMode.POSITIVE:
            if "idempotency-key" not in sent_keys:
                # The key is optional in the schema only so that its absence gets its own
                # code; a request with one goes on to the wallets and the ledger.
                headers["Idempotency-Key"] = str(uuid.uuid4())
            if self.aim is not None:
                self.aim(case, self.sent)
        try:
            response = case.call(
                base_url=self.base_url,
                session=self.session,
                headers=headers,
                timeout=REQUEST_TIMEOUT_S,
            )
        except (requests.exceptions.InvalidHeader, UnicodeEncodeError, ValueError):
            return  # a request no HTTP client can send (e.g. a header with a newline)
        self.sent += 1
        self.statuses[(f"{case.method} {case.path}", response.status_code)] += 1
        where = f"{case.method} {case.formatted_path} [{mode.value}]"
        if response.status_code >= 500:
            self.findings.append(f"{where}: {response.status_code} {response.text[:200]}")
        elif problem := _envelope_problem(response):
            self.findings.append(
                f"{where}: {response.status_code} {problem}: {response.text[:200]}"
            )

    def summary(self, api: str) -> str:
        by_operation: dict[str, list[str]] = {}
        for (operation, status), count in sorted(self.statuses.items()):
            by_operation.setdefault(operation, []).append(f"{status}x{count}")
        lines = [f"  {operation}: {' '.join(counts)}" for operation, counts in by_operation.items()]
        return "\n".join([f"{api}: {self.sent} requests", *lines])

    def report(self, api: str) -> str:
        shown = "\n".join(self.findings[:FINDINGS_SHOWN_MAX])
        return f"{api}: {len(self.findings)} of {self.sent} fuzzed requests went wrong:\n{shown}"


def at_wallets(payer: str, payee: str) -> Callable[[schemathesis.Case, int], None]:
    """Every other fuzzed transaction moves USD between two real wallets, so fuzzed text,
    metadata and amounts are accepted and go through the stream and the ledger too (a
    service they crash fails the run when the e2e services are checked at its end)."""

    def aim(case: schemathesis.Case, number: int) -> None:
        body = case.body
        if case.path != "/v1/transactions" or not isinstance(body, dict) or number % 2:
            return
        if isinstance(body.get("source_wallet_id"), str):
            body["source_wallet_id"] = payer
        if isinstance(body.get("destination_wallet_id"), str):
            body["destination_wallet_id"] = payee
        body["currency_code"] = "USD"
        whole, _, cents = str(body.get("amount", "")).partition(".")
        body["amount"] = f"{whole[-6:] or '1'}.{(cents + '00')[:2]}"  # a USD amount

    return aim


def test_ingest_api_answers_no_server_error_to_a_schema_fuzz(running: dict[str, str]) -> None:
    # A key of a tenant app and an admin reaches every route (money, reviews, keys), with
    # room for the fuzz's pace.
    key = make_client(running["DATABASE_URL"], role="client,admin", rate_limit_per_second=100_000)
    with httpx.Client(base_url=running["INGEST_URL"], headers={"X-API-Key": key}) as api:
        payer = funded_wallet(api, "1000.00")
        payee = new_wallet(api)
    fuzz = Fuzz(running["INGEST_URL"], {"X-API-Key": key}, at_wallets(payer, payee))
    fuzz.run()
    print(fuzz.summary("ingest"))
    assert fuzz.sent > 0
    assert fuzz.findings == [], fuzz.report("ingest")
    accepted_count = sum(n for (op, status), n in fuzz.statuses.items() if status == 202)
    assert accepted_count > 0, "no fuzzed transaction was accepted: the fuzz stayed at the edge"
    with httpx.Client(base_url=running["INGEST_URL"], headers={"X-API-Key": key}) as api:
        after = accepted(api, {**DEPOSIT, "destination_wallet_id": payee})
        assert wait_final(api, after)["status"] == "COMPLETED"  # the ledger went on


def test_analytics_api_answers_no_server_error_to_a_schema_fuzz(running: dict[str, str]) -> None:
    key = create_api_key(
        running["DATABASE_URL"],
        name=f"fuzz-{uuid.uuid4().hex[:8]}",
        role=Role.ADMIN,
        rate_limit_per_second=100_000,
    )
    fuzz = Fuzz(running["ANALYTICS_URL"], {"X-API-Key": key})
    fuzz.run()
    print(fuzz.summary("analytics"))
    assert fuzz.sent > 0
    assert fuzz.findings == [], fuzz.report("analytics")

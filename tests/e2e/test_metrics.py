"""Every service answers /metrics in Prometheus' text format with what it has done."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import funded_wallet

pytestmark = pytest.mark.e2e


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus_client's own parser."""
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def total(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        value
        for (sample, have), value in found.items()
        if sample == name and set(labels.items()) <= set(have)
    )


def test_every_service_reports_its_work(api: httpx.Client, running: dict[str, str]) -> None:
    funded_wallet(api, "25.00")  # a deposit decided by the stream and posted by the ledger
    ports = {name: running[f"METRICS_PORT_{name}"] for name in ("STREAMS", "LEDGER_0", "GATEWAY")}
    deadline = time.monotonic() + 20  # the consumers' lag comes every 5 s (statistics)
    while True:
        ingest = samples(f"{running['INGEST_URL']}/metrics")
        streams = samples(f"http://127.0.0.1:{ports['STREAMS']}/metrics")
        ledger = samples(f"http://127.0.0.1:{ports['LEDGER_0']}/metrics")
        lag_known = all(
            any(name == "walletpipe_consumer_lag" for name, _ in found)
            for found in (streams, ledger)
        )
        if lag_known or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    route = "/v1/transactions"
    assert total(ingest, "walletpipe_http_requests_total", route=route, method="POST") >= 1
    assert total(ingest, "walletpipe_http_request_seconds_count", route=route) >= 1
    assert total(streams, "walletpipe_decisions_total", outcome="approved") >= 1
    assert total(ledger, "walletpipe_batch_records_count", service="ledger") >= 1
    assert total(ledger, "walletpipe_records_total", service="ledger", outcome="processed") >= 1
    assert lag_known, "no consumer lag from the stream's or the ledger's librdkafka statistics"
    samples(f"http://127.0.0.1:{ports['GATEWAY']}/metrics")
    analytics = samples(f"{running['ANALYTICS_URL']}/metrics")
    assert total(analytics, "walletpipe_http_requests_total", route="/health") >= 1


def test_errors_are_counted_by_code(api: httpx.Client, running: dict[str, str]) -> None:
    before = total(
        samples(f"{running['INGEST_URL']}/metrics"),
        "walletpipe_errors_total",
        code="INVALID_API_KEY",
    )
    refused = httpx.get(f"{running['INGEST_URL']}/v1/me", headers={"X-API-Key": "wp_not_a_key"})
    assert refused.status_code == 401
    after = total(
        samples(f"{running['INGEST_URL']}/metrics"),
        "walletpipe_errors_total",
        code="INVALID_API_KEY",
    )
    assert after == before + 1

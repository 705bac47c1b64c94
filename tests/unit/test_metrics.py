"""infra.metrics: the pieces each service uses, against prometheus_client's own parser."""

from __future__ import annotations

import socket

import httpx
import orjson
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from infra import metrics


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_consumer_lag_comes_from_librdkafka_statistics() -> None:
    on_statistics = metrics.kafka_statistics("unit-lag")
    stats = {
        "topics": {
            "wallet.commands": {
                "partitions": {
                    # Offsets committed elsewhere (consumer_lag -1): the position counts.
                    "0": {
                        "ls_offset": 112,
                        "hi_offset": 115,
                        "app_offset": 100,
                        "consumer_lag": -1,
                    },
                    "1": {"ls_offset": 40, "app_offset": -1},  # not fetched by this consumer
                    "-1": {"ls_offset": 0, "app_offset": 0},  # librdkafka's internal UA partition
                }
            }
        }
    }
    on_statistics(orjson.dumps(stats).decode())
    assert (
        value("walletpipe_consumer_lag", service="unit-lag", topic="wallet.commands", partition="0")
        == 12
    )
    assert (
        metrics.REGISTRY.get_sample_value(
            "walletpipe_consumer_lag",
            {"service": "unit-lag", "topic": "wallet.commands", "partition": "1"},
        )
        is None
    )
    on_statistics("not json")  # logged, never raised into librdkafka's poll


class _Message:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic


def test_records_and_batches_are_counted() -> None:
    before = value("walletpipe_records_total", service="unit-batch", topic="a", outcome="processed")
    metrics.count_records("unit-batch", [_Message("a"), _Message("b"), _Message("a")])
    assert (
        value("walletpipe_records_total", service="unit-batch", topic="a", outcome="processed")
        == before + 2
    )
    with metrics.BatchTimer("unit-batch", 3):
        pass
    assert value("walletpipe_batch_records_sum", service="unit-batch") == 3
    assert value("walletpipe_batch_seconds_count", service="unit-batch") == 1


def test_http_requests_counted_by_route_template_and_scraped() -> None:
    app = FastAPI()
    metrics.install_http_metrics(app, "unit-http")

    @app.get("/v1/things/{thing_id}")
    def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    with TestClient(app) as client:
        for n in range(3):
            assert client.get(f"/v1/things/{n}").status_code == 200
        assert client.get("/nowhere").status_code == 404
        scraped = client.get("/metrics")
    assert "/metrics" not in app.openapi()["paths"]
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["walletpipe_http_requests"].samples
        if s.labels.get("service") == "unit-http" and s.name.endswith("_total")
    }
    assert requests[("/v1/things/{thing_id}", "200")] == 3
    assert requests[("unmatched", "404")] == 1


def test_a_service_serves_its_metrics_on_its_port(monkeypatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("METRICS_PORT", str(port))
    assert metrics.serve_metrics("unit-serve") == port
    metrics.ERRORS.labels("unit-serve", "SOME_CODE").inc()
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert 'walletpipe_errors_total{code="SOME_CODE",service="unit-serve"} 1.0' in answer.text
    # The port is now taken: a second server is refused, and the service carries on.
    assert metrics.serve_metrics("unit-serve") is None
    monkeypatch.delenv("METRICS_PORT")
    assert metrics.serve_metrics("unit-serve") is None


def test_a_service_of_several_processes_answers_for_all_of_them(tmp_path) -> None:
    """uvicorn's workers each write their values to files; any worker's scrape sums them."""
    import subprocess
    import sys

    shared = metrics.fresh_metrics_dir(tmp_path / "ingest.metrics")
    count_one = (
        "from infra import metrics; "
        "metrics.ERRORS.labels('unit-multi', 'SOME_CODE').inc(); "
        "print(metrics.scrape()[0].decode())"
    )
    env = {"PATH": "", metrics.MULTIPROCESS_DIR_ENV: str(shared)}
    for _worker in range(2):
        scraped = subprocess.run(
            [sys.executable, "-c", count_one], env=env, capture_output=True, text=True, check=True
        ).stdout
    assert 'walletpipe_errors_total{code="SOME_CODE",service="unit-multi"} 2.0' in scraped
    assert not list(metrics.fresh_metrics_dir(shared).iterdir())  # a restart starts at zero

"""Prometheus metrics of every service: one registry per process, scraped at ``/metrics``.

The HTTP services (ingest, analytics) answer ``/metrics`` on their own port
(``http_metrics_route``); the others (stream worker, ledger writers, gateway) serve it on the
port the stack picked for them (``METRICS_PORT``, ``serve_metrics``), on 127.0.0.1 only.

What is counted, with the same names in every service (``service`` label = the process's
role): records consumed and their outcome, batch sizes and times, Kafka consumer lag per
partition, HTTP requests and latencies by route and status, errors by code, and the stream's
decisions by outcome. Consumer lag comes from librdkafka's own statistics
(``statistics.interval.ms``, ``kafka_statistics``): no extra request to the broker.
Every label's values come from a closed set (topics, routes, outcomes, codes), so the
number of series stays bounded.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("infra.metrics")

#: One registry per process (not prometheus_client's global one, so importing a service's
#: module twice in a test process never registers a metric twice).
REGISTRY = CollectorRegistry(auto_describe=True)

#: prometheus-client's variable: set, every metric of the process is kept in a file there.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: How often librdkafka hands its statistics to ``kafka_statistics`` (lag, request rates).
STATISTICS_INTERVAL_MS = 5_000

#: Batch sizes from one record to the sink's 50,000.
_BATCH_BUCKETS = (1, 5, 20, 100, 500, 2_000, 10_000, 50_000)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

RECORDS = Counter(
    "walletpipe_records",
    "Kafka records a service consumed, by topic and what became of them",
    ["service", "topic", "outcome"],
    registry=REGISTRY,
)
BATCH_RECORDS = Histogram(
    "walletpipe_batch_records",
    "Records in one batch a service processed (one database transaction, one insert)",
    ["service"],
    buckets=_BATCH_BUCKETS,
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "walletpipe_batch_seconds",
    "Time to process one batch, from its first record taken to its commit",
    ["service"],
    buckets=_SECONDS_BUCKETS,
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "walletpipe_consumer_lag",
    "Records on a partition the service's consumer has not reached yet (librdkafka statistics)",
    ["service", "topic", "partition"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "walletpipe_errors",
    "Errors by stable code: refused requests, dead letters, reconnections",
    ["service", "code"],
    registry=REGISTRY,
)
DECISIONS = Counter(
    "walletpipe_decisions",
    "The stream's decisions on transaction requests, by outcome",
    ["outcome"],
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "walletpipe_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["service", "route", "method", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "walletpipe_http_request_seconds",
    "Time from a request's arrival to its answer's start, by route template",
    ["service", "route"],
    buckets=_SECONDS_BUCKETS,
    registry=REGISTRY,
)


def serve_metrics(service: str) -> int | None:
    """Serve ``/metrics`` on ``METRICS_PORT`` (127.0.0.1) from a daemon thread; None when the
    variable is unset (a service started by hand or by a test that does not scrape).

    A port already taken (a second writer of the same shard waiting as a standby) is logged
    and the service runs without metrics: a scrape endpoint is never a reason to stop."""
    port = os.environ.get("METRICS_PORT")
    if not port:
        return None
    try:
        start_http_server(int(port), addr="127.0.0.1", registry=REGISTRY)
    except OSError as error:
        log.error("%s serves no /metrics: port %s: %s", service, port, error)
        return None
    log.info("%s metrics on http://127.0.0.1:%s/metrics", service, port)
    return int(port)


def scrape() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type. A service of several
    processes (the ingest API's uvicorn workers) answers for all of them: each process
    writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape adds them up."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        shared = CollectorRegistry()
        MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
        return generate_latest(shared), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def fresh_metrics_dir(path: Path) -> Path:
    """An empty directory for a multi-process service's metric files: emptied at each
    start of the service, so a restart's counters begin again as a new process's do."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def kafka_statistics(service: str) -> Callable[[str], None]:
    """A librdkafka ``stats_cb``: each consumed partition's lag into ``CONSUMER_LAG``.

    librdkafka calls it from ``poll()`` every ``statistics.interval.ms`` with its statistics
    as JSON. The lag is the partition's end (the last stable offset for a read-committed
    consumer, else the high watermark) less the consumer's position (``app_offset``), not
    librdkafka's own ``consumer_lag``, which counts from offsets committed to Kafka: the
    ledger writer keeps its offsets in PostgreSQL and the stream commits them in its
    transactions. A partition this consumer does not fetch reports -1 and is left out.
    """

    def on_statistics(text: str) -> None:
        try:
            stats = orjson.loads(text)
            for topic, info in stats.get("topics", {}).items():
                for partition, figures in info.get("partitions", {}).items():
                    end = figures.get("ls_offset", -1)
                    if end is None or end < 0:
                        end = figures.get("hi_offset", -1)
                    position = figures.get("app_offset", -1)
                    if (
                        partition == "-1"
                        or end is None
                        or position is None
                        or min(end, position) < 0
                    ):
                        continue
                    CONSUMER_LAG.labels(service, topic, partition).set(max(0, end - position))
        except (orjson.JSONDecodeError, AttributeError, TypeError) as error:
            log.warning("unreadable librdkafka statistics: %s", error)

    return on_statistics


def consumer_statistics_config(service: str) -> dict[str, Any]:
    """What to add to a confluent-kafka consumer's config for its lag to be exported."""
    return {
        "statistics.interval.ms": STATISTICS_INTERVAL_MS,
        "stats_cb": kafka_statistics(service),
    }


class BatchTimer:
    """Times one batch and counts its records: ``with BatchTimer("ledger", n): ...``."""

    __slots__ = ("_service", "_records", "_started")

    def __init__(self, service: str, records: int) -> None:
        self._service, self._records = service, records
        self._started = 0.0

    def __enter__(self) -> BatchTimer:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            BATCH_RECORDS.labels(self._service).observe(self._records)
            BATCH_SECONDS.labels(self._service).observe(time.perf_counter() - self._started)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpMetrics:
    """ASGI middleware: each answered request counted by its route *template*
    (``/v1/wallets/{wallet_id}``: a bounded set), method and status, and timed to the
    start of its answer. Unmatched paths count as ``unmatched``."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_counting(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                HTTP_SECONDS.labels(self.service, template).observe(time.perf_counter() - started)
                HTTP_REQUESTS.labels(self.service, template, scope["method"], status[0]).inc()
            await send(message)

        await self.app(scope, receive, send_counting)


def install_http_metrics(app: FastAPI, service: str) -> None:
    """On a FastAPI app: count and time its requests, and answer ``GET /metrics`` (kept out
    of the OpenAPI document: it is for the operator's scraper, not for API clients)."""
    app.add_middleware(HttpMetrics, service=service)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = scrape()
        return Response(content=body, media_type=content_type)


def count_records(service: str, messages: Iterable[Any], outcome: str = "processed") -> None:
    """Count a batch of consumed confluent-kafka messages by topic (one label lookup per
    topic of the batch, not per record)."""
    by_topic: dict[str, int] = {}
    for message in messages:
        topic = message.topic()
        by_topic[topic] = by_topic.get(topic, 0) + 1
    for topic, count in by_topic.items():
        RECORDS.labels(service, topic, outcome).inc(count)

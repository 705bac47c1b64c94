"""The analytics service: owns the ClickHouse engine, runs the sink and the regulatory
detector, serves the reporting API and the dashboard.

Only one process can open a chDB path, so this service is the one that does; other readers
(CLI reports, tests) ask its HTTP API while it runs.
Run: ``python -m analytics.service`` (settings from the environment) or ``walletpipe run``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator
from importlib import resources
from urllib.parse import urlparse

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from analytics import errors, export
from analytics.api import document_roles, router
from analytics.clickhouse import NATIVE_DECODER, Warehouse
from analytics.clients import ClientDirectory
from analytics.detector import RegulatoryDetector
from analytics.mapping import NATIVE_DECODER_MISSING
from analytics.settings import AnalyticsSettings
from analytics.sink import EventSink
from infra.metrics import install_http_metrics

log = logging.getLogger("analytics")
THREAD_JOIN_TIMEOUT_S = 30.0


def dashboard_html() -> str:
    return resources.files("analytics").joinpath("static/dashboard.html").read_text()


def create_app(settings: AnalyticsSettings | None = None) -> FastAPI:
    settings = settings or AnalyticsSettings()  # type: ignore[call-arg]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warehouse = Warehouse(settings.clickhouse_target)
        if warehouse.rebuilt_roll_ups:
            log.info("roll-ups rebuilt from their sources: %s", warehouse.rebuilt_roll_ups)
        clients = ClientDirectory(settings)
        clients.open()
        sink = EventSink(settings, warehouse)
        detector = RegulatoryDetector(settings, warehouse)
        stop = threading.Event()
        threads = [
            threading.Thread(target=sink.run, args=(stop,), name="analytics-sink"),
            threading.Thread(target=detector.run, args=(stop,), name="regulatory-detector"),
        ]
        for thread in threads:
            thread.start()
        app.state.warehouse, app.state.clients = warehouse, clients
        app.state.sink, app.state.detector, app.state.threads = sink, detector, threads
        app.state.signing_key = functools.cache(lambda: export.signing_key(settings))
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=THREAD_JOIN_TIMEOUT_S)
            clients.close()
            warehouse.close()

    app = FastAPI(title="wallet-pipeline analytics", version="1", lifespan=lifespan)
    app.state.settings = settings

    errors.install(app)
    install_http_metrics(app, "analytics")

    @app.get("/health")
    def health(request: Request) -> JSONResponse:
        state = request.app.state
        alive = all(thread.is_alive() for thread in state.threads)
        body = {
            "status": "ok" if alive else "degraded",
            "rows_written": state.sink.rows_written,
            "duplicates_dropped": state.sink.duplicates_dropped,
            "dead_letters": state.sink.dead_letters,
            "sink_consuming": state.sink.consuming.is_set(),
            "sink_restarts": state.sink.restarts,
            "sink_last_error": state.sink.last_error,
            "regulatory_cycles": state.detector.cycles,
            "regulatory_emitted": state.detector.emitted,
            "regulatory_last_error": state.detector.last_error,
        }
        return JSONResponse(status_code=200 if alive else 503, content=body)

    @app.get("/dashboard", response_class=HTMLResponse)
    def dashboard() -> str:
        """Live charts; the page reads its reporting key from ``#key=...`` (never sent to
        the server in the URL) and refreshes itself every few seconds."""
        return dashboard_html()

    app.include_router(document_roles(router))
    return app


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s analytics %(levelname)s %(message)s"
    )
    settings = AnalyticsSettings()  # type: ignore[call-arg]
    if NATIVE_DECODER is None:
        log.warning(NATIVE_DECODER_MISSING)
    url = urlparse(settings.analytics_url)
    uvicorn.run(
        create_app(settings),
        host=url.hostname or "127.0.0.1",
        port=url.port or 18090,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

"""The analytics service: owns the ClickHouse engine, runs the sink, serves reports.

Only one process can open a chDB path, so this service is the one that does; other readers
(CLI reports, tests) ask its HTTP API while it runs.
Run: ``python -m analytics.service`` (settings from the environment) or ``walletpipe run``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlparse

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from analytics import reports
from analytics.clickhouse import Warehouse
from analytics.settings import AnalyticsSettings
from analytics.sink import EventSink

log = logging.getLogger("analytics")
Start = Annotated[datetime | None, Query(alias="from")]
End = Annotated[datetime | None, Query(alias="to")]


def create_app(settings: AnalyticsSettings | None = None) -> FastAPI:
    settings = settings or AnalyticsSettings()  # type: ignore[call-arg]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warehouse = Warehouse(settings.clickhouse_target)
        sink = EventSink(settings, warehouse)
        stop = threading.Event()
        thread = threading.Thread(target=sink.run, args=(stop,), name="analytics-sink")
        thread.start()
        app.state.warehouse, app.state.sink = warehouse, sink
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)
            warehouse.close()

    app = FastAPI(title="wallet-pipeline analytics", version="1", lifespan=lifespan)

    @app.exception_handler(reports.ReportError)
    async def on_report_error(_request: Request, error: reports.ReportError) -> JSONResponse:
        return JSONResponse(
            status_code=422, content={"error": {"code": error.code, "message": error.message}}
        )

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        sink: EventSink = request.app.state.sink
        return {
            "status": "ok",
            "rows_written": sink.rows_written,
            "dead_letters": sink.dead_letters,
        }

    @app.get("/v1/reports/volume")
    def volume(request: Request, start: Start = None, end: End = None) -> dict[str, Any]:
        start, end = reports.time_range(start, end, settings.report_range_days_max)
        return {
            "from": start,
            "to": end,
            "rows": reports.volume(request.app.state.warehouse, start, end),
        }

    @app.get("/v1/reports/latency")
    def latency(request: Request, start: Start = None, end: End = None) -> dict[str, Any]:
        start, end = reports.time_range(start, end, settings.report_range_days_max)
        return {
            "from": start,
            "to": end,
            **reports.latency(request.app.state.warehouse, start, end),
        }

    @app.get("/v1/reports/transactions/{transaction_id}")
    def transaction(request: Request, transaction_id: uuid.UUID) -> dict[str, Any]:
        return {
            "transaction_id": transaction_id,
            "events": reports.transaction_events(request.app.state.warehouse, str(transaction_id)),
        }

    return app


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s analytics %(levelname)s %(message)s"
    )
    settings = AnalyticsSettings()  # type: ignore[call-arg]
    url = urlparse(settings.analytics_url)
    uvicorn.run(
        create_app(settings),
        host=url.hostname or "127.0.0.1",
        port=url.port or 18090,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

"""The streaming side of regulatory reporting: a periodic, bounded, idempotent detector.

Every ``regulatory_interval_s`` it runs the rules over the recent history (the last
``regulatory_lookback_days``; reports are taken from the part whose full context is
inside it), drops the reports already emitted (their ids are in ``regulatory_reports``),
publishes the rest on ``regulatory.reports`` and then records them. A crash between the two
re-publishes the same record with the same ``report_id`` at most once more: consumers
dedupe by it. A restart re-emits nothing, because the ids are derived from the evidence.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer

from analytics.clickhouse import Warehouse
from analytics.exceptions import AnalyticsError
from analytics.regulatory import Report
from analytics.regulatory_source import RegulatorySource
from analytics.settings import AnalyticsSettings
from domain.topics import REGULATORY_REPORTS

log = logging.getLogger("analytics")
PUBLISH_TIMEOUT_S = 30.0
IDS_PER_LOOKUP_MAX = 5_000


def report_row(report: Report, record: dict[str, Any]) -> list[Any]:
    return [
        report.report_id,
        report.report_type.value,
        report.report_type.category,
        report.occurred_at,
        report.subject_user_id,
        report.subject_wallet_id,
        report.currency_code,
        report.total_amount,
        len(report.evidence),
        json.dumps(record, sort_keys=True),
    ]


def subject_key(report: Report) -> bytes:
    """Reports about one subject stay in order on one partition."""
    return str(report.subject_user_id or report.subject_wallet_id or report.report_id).encode()


class RegulatoryDetector:
    def __init__(
        self,
        settings: AnalyticsSettings,
        warehouse: Warehouse,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.source = RegulatorySource(warehouse, settings)
        self.clock = clock
        self.cycles = 0
        self.emitted = 0
        self.last_error: str | None = None

    def run(self, stop: threading.Event) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 20,
            }
        )
        try:
            while not stop.is_set():
                try:
                    self.cycle(producer)
                except (AnalyticsError, RuntimeError) as error:
                    self.last_error = str(error)
                    log.error("regulatory detector cycle failed: %s", error)
                stop.wait(self.settings.regulatory_interval_s)
        finally:
            producer.flush(5)

    def window(self, now: datetime) -> tuple[datetime, datetime, datetime]:
        """(from, to, closed_before): reports occurring in [from, to) whose context lies
        inside the lookback; currency transaction reports only for days over by the grace."""
        s = self.settings
        start = now - timedelta(days=s.regulatory_lookback_days) + self.source.rules.context
        return start, now, now - timedelta(minutes=s.ctr_grace_minutes)

    def cycle(self, producer: Producer) -> list[Report]:
        start, end, closed_before = self.window(self.clock())
        reports = self.source.reports(start, end, closed_before=closed_before)
        fresh = self.not_emitted(reports)[: self.settings.regulatory_reports_per_cycle_max]
        if fresh:
            self.publish(producer, fresh)
        self.cycles += 1
        self.emitted += len(fresh)
        self.last_error = None
        return fresh

    def not_emitted(self, reports: Sequence[Report]) -> list[Report]:
        ids = [r.report_id for r in reports]
        emitted: set = set()
        for first in range(0, len(ids), IDS_PER_LOOKUP_MAX):
            emitted |= self.warehouse.stored_report_ids(ids[first : first + IDS_PER_LOOKUP_MAX])
        return [r for r in reports if r.report_id not in emitted]

    def publish(self, producer: Producer, reports: Sequence[Report]) -> None:
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        topic = self.settings.topic_prefix + REGULATORY_REPORTS.name
        rows = []
        for report in reports:
            record = report.to_record()
            producer.produce(
                topic,
                key=subject_key(report),
                value=json.dumps(record, sort_keys=True).encode(),
                on_delivery=delivered,
            )
            producer.poll(0)
            rows.append(report_row(report, record))
        undelivered = producer.flush(PUBLISH_TIMEOUT_S)
        if undelivered or failures:
            # Drop what is still queued: the next cycle publishes these reports again.
            producer.purge()
            producer.flush(0)
            raise RuntimeError(
                f"{undelivered or len(failures)} regulatory report(s) not delivered to "
                f"{topic}: {failures[:3] or 'timed out'}"
            )
        # Recorded only once Kafka has them: a crash before this re-emits, never loses.
        self.warehouse.insert_reports(rows)
        log.info("regulatory: emitted %d report(s)", len(reports))

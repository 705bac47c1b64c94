"""The writer's loop: consume a batch → plan it → commit it with its offsets → relay events.

Exactly once: the offsets of a batch are committed in the same PostgreSQL transaction as
its postings, and consumption resumes from them; a replayed transaction id is skipped.
Events go out through the outbox, so a crash between commit and publish only delays them.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
from confluent_kafka import Consumer, Message, Producer

from domain import records
from domain.exceptions import RecordDecodeError
from domain.reversals import reversal_of
from domain.transactions import SystemAccount, system_wallet_id
from ledger_writer import store
from ledger_writer.kafka_io import (
    consumer_config,
    dead_letter,
    make_assign_callback,
    producer_config,
    send_and_wait,
)
from ledger_writer.planning import LedgerInput, TwoPhase, plan_batch, wallets_of
from ledger_writer.settings import LedgerSettings

log = logging.getLogger("ledger_writer")


class LedgerWriter:
    def __init__(self, settings: LedgerSettings) -> None:
        self.settings = settings
        self.two_phase = TwoPhase(
            frozenset(settings.two_phase_types), timedelta(milliseconds=settings.hold_timeout_ms)
        )
        self.totals = {
            "posted": 0,
            "failed": 0,
            "held": 0,
            "duplicates": 0,
            "dead_letters": 0,
            "ignored_gateway_results": 0,
        }

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        with psycopg.connect(s.database_url, autocommit=True) as conn:
            store.ensure_system_accounts(conn, datetime.now(UTC))
            consumer = Consumer(
                consumer_config(s.kafka_bootstrap, s.consumer_group, s.session_timeout_ms)
            )
            producer = Producer(producer_config(s.kafka_bootstrap))
            on_assign = make_assign_callback(
                lambda topic: store.load_offsets(conn, s.consumer_group, topic)
            )
            topics = [s.commands_topic, s.rejected_topic, s.gateway_results_topic]
            consumer.subscribe(topics, on_assign=on_assign)
            log.info("ledger writer consuming %s", topics)
            last_report = last_sweep = time.monotonic()
            try:
                while not stop.is_set():
                    batch = consumer.consume(
                        num_messages=s.batch_size_max, timeout=s.flush_interval_ms / 1000
                    )
                    sweep_due = time.monotonic() - last_sweep > s.expiry_sweep_interval_ms / 1000
                    if batch or sweep_due:  # every batch also releases expired holds
                        self.process(conn, producer, batch)
                        last_sweep = time.monotonic()
                    self.relay_outbox(conn, producer)
                    if time.monotonic() - last_report > s.report_interval_ms / 1000:
                        log.info("ledger totals %s", self.totals)
                        last_report = time.monotonic()
            finally:
                consumer.close()
                producer.flush(5)

    def process(self, conn: psycopg.Connection, producer: Producer, batch: list[Message]) -> None:
        inputs: list[LedgerInput] = []
        by_event: dict[object, Message] = {}
        dead: list[tuple] = []
        offsets: dict[tuple[str, int], int] = {}
        for message in batch:
            if message.error():
                log.warning("consumer error: %s", message.error())
                continue
            offsets[(message.topic(), message.partition())] = message.offset() + 1
            try:
                item = self._decode(message)
            except RecordDecodeError as error:
                dead.append(dead_letter(message, error.message))
                continue
            inputs.append(item)
            by_event[item.event_id] = message
        now = datetime.now(UTC)
        results = [i.transaction_id for i in inputs if isinstance(i, records.GatewayResponded)]
        holds = store.load_holds(conn, results) if results else {}
        expired = store.expired_holds(conn, now, self.settings.batch_size_max)
        holds.update(expired)
        held_commands = [hold.command for hold in holds.values()]
        wallets = wallets_of(inputs) | wallets_of(held_commands)
        for currency in {
            item.currency_code
            for item in [*inputs, *held_commands]
            if not isinstance(item, records.GatewayResponded)
        }:
            wallets.update(system_wallet_id(a, currency) for a in SystemAccount)
        transaction_ids = [
            i.transaction_id for i in inputs if not isinstance(i, records.GatewayResponded)
        ]
        posted_before = store.already_posted(conn, transaction_ids)
        original_ids = [
            original
            for i in inputs
            if isinstance(i, records.PostTransaction)
            and (original := reversal_of(i.metadata)) is not None
        ]
        originals = store.load_originals(conn, original_ids) if original_ids else {}
        accounts = store.load_accounts(conn, wallets)
        plan = plan_batch(
            inputs,
            posted_before,
            accounts,
            now,
            two_phase=self.two_phase,
            holds=holds,
            expired=list(expired),
            originals=originals,
            pending=[t for t, status in posted_before.items() if status == "PENDING"],
        )
        dead.extend(dead_letter(by_event[e], reason) for e, reason in plan.dead_letters.items())
        if dead:  # before the offsets move past them, so none is lost on a crash
            send_and_wait(producer, dead, self.settings.publish_timeout_ms / 1000)
            self.totals["dead_letters"] += len(dead)
        if not (offsets or plan.status_updates):
            return  # an idle sweep that found nothing to expire
        store.write_plan(
            conn,
            plan,
            offsets,
            self.settings.consumer_group,
            self.settings.events_topic,
            now,
            self.settings.gateway_requests_topic,
        )
        self.totals["posted"] += plan.posted
        self.totals["held"] += plan.held
        self.totals["ignored_gateway_results"] += plan.ignored_results
        self.totals["failed"] += plan.failed
        self.totals["duplicates"] += plan.skipped_duplicates

    def _decode(self, message: Message) -> LedgerInput:
        if message.topic() == self.settings.gateway_results_topic:
            return records.decode_gateway_responded(message.value())
        return records.decode_ledger_input(message.value())

    def relay_outbox(self, conn: psycopg.Connection, producer: Producer) -> int:
        topics = [self.settings.events_topic, self.settings.gateway_requests_topic]
        rows = store.unpublished_outbox(conn, topics, self.settings.outbox_batch_max)
        if not rows:
            return 0
        send_and_wait(
            producer,
            [(topic, key, bytes(payload), []) for _id, topic, key, payload in rows],
            self.settings.publish_timeout_ms / 1000,
        )
        store.mark_outbox_published(conn, [row[0] for row in rows])
        return len(rows)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s ledger %(levelname)s %(message)s")
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    LedgerWriter(LedgerSettings()).run(stop)  # type: ignore[call-arg]


if __name__ == "__main__":
    main()

"""The writer's loop: consume a batch → plan it → commit it with its offsets → relay events.

Exactly once: the offsets of a batch are committed in the same PostgreSQL transaction as
its postings, and consumption resumes from them; a replayed transaction id is skipped.
Events go out through the outbox, so a crash between commit and publish only delays them.

With N shards (LEDGER_DATABASE_URLS) one writer runs per shard, each in its own consumer
group reading every partition: it keeps the inputs whose payer is on its shard (and the
shard credits addressed to it), skips the rest with their offsets, and copies the wallets
it needs from the directory database before it plans (``store.replicate_wallets``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
from confluent_kafka import Consumer, Message, Producer

from domain import fast_records, records
from domain.exceptions import RecordDecodeError
from domain.reversals import reversal_of
from domain.shards import clearing_wallet_id
from domain.transactions import SystemAccount, system_wallet_id
from ledger_writer import store
from ledger_writer.exceptions import LedgerWriterError
from ledger_writer.kafka_io import (
    consumer_config,
    dead_letter,
    make_assign_callback,
    producer_config,
    send_and_wait,
)
from ledger_writer.planning import LedgerInput, TwoPhase, plan_batch, wallets_of
from ledger_writer.settings import LedgerSettings
from ledger_writer.sharding import home_shard

log = logging.getLogger("ledger_writer")

#: Wallets a shard's writer remembers having copied; the set is cleared when it is full.
COPIED_CACHED_MAX = 200_000


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is built: a batch makes some hundred
    objects per transfer and keeps them until it is written, so the collector would run
    every few hundred allocations and walk them all again, for garbage that reference
    counting frees anyway (the rows are tuples, dicts and strings). The pause is bounded by
    the batch (``batch_size_max``); the collector runs as before between batches."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
            "other_shards": 0,
        }
        self.shards = settings.shard_map
        self.shard = self.shards.check_shard(settings.shard)
        #: Wallets already copied to this shard (they stay): no per-batch look-up for them.
        self._copied: set[object] = set()

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        directory = (
            psycopg.connect(s.database_url, autocommit=True) if self.shards.sharded else None
        )
        try:
            with psycopg.connect(s.shard_database_url, autocommit=True) as conn:
                self._run(conn, directory, stop)
        finally:
            if directory is not None:
                directory.close()

    def _run(
        self, conn: psycopg.Connection, directory: psycopg.Connection | None, stop: threading.Event
    ) -> None:
        s = self.settings
        store.ensure_system_accounts(
            conn, datetime.now(UTC), self.shard, self.shards.peers(self.shard)
        )
        consumer = Consumer(consumer_config(s.kafka_bootstrap, s.group, s.session_timeout_ms))
        producer = Producer(producer_config(s.kafka_bootstrap))
        on_assign = make_assign_callback(lambda topic: store.load_offsets(conn, s.group, topic))
        topics = [s.commands_topic, s.rejected_topic, s.gateway_results_topic]
        if self.shards.sharded:
            topics.append(s.shard_credits_topic)
        consumer.subscribe(topics, on_assign=on_assign)
        log.info("ledger writer of shard %d/%d consuming %s", self.shard, self.shards.count, topics)
        last_report = last_sweep = time.monotonic()
        try:
            while not stop.is_set():
                batch = consumer.consume(
                    num_messages=s.batch_size_max, timeout=s.flush_interval_ms / 1000
                )
                sweep_due = time.monotonic() - last_sweep > s.expiry_sweep_interval_ms / 1000
                if batch or sweep_due:  # every batch also releases expired holds
                    self.process(conn, producer, batch, directory=directory)
                    last_sweep = time.monotonic()
                self.relay_outbox(conn, producer)
                if time.monotonic() - last_report > s.report_interval_ms / 1000:
                    log.info("ledger totals %s", self.totals)
                    last_report = time.monotonic()
        finally:
            consumer.close()
            producer.flush(5)

    def process(
        self,
        conn: psycopg.Connection,
        producer: Producer,
        batch: list[Message],
        *,
        directory: psycopg.Connection | None = None,
    ) -> None:
        """One batch: ``conn`` is this shard's database; ``directory`` the API's, needed
        with more than one shard (to know each wallet's shard and copy its row)."""
        with _collector_paused():
            self._process(conn, producer, batch, directory)

    def _process(
        self,
        conn: psycopg.Connection,
        producer: Producer,
        batch: list[Message],
        directory: psycopg.Connection | None,
    ) -> None:
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
        view: dict = {}
        if self.shards.sharded:
            if directory is None:
                raise LedgerWriterError("a sharded writer needs the directory database")
            inputs, view = self._route(directory, conn, inputs, now)
        results = [i.transaction_id for i in inputs if isinstance(i, records.GatewayResponded)]
        holds = store.load_holds(conn, results) if results else {}
        expired = store.expired_holds(conn, now, self.settings.batch_size_max)
        holds.update(expired)
        held_commands = [hold.command for hold in holds.values()]
        wallets = wallets_of(inputs) | wallets_of(held_commands)
        if directory is not None and held_commands:
            view.update(self._directory_view(directory, wallets_of(held_commands)))
        owners = {w: shard for w, (shard, _status) in view.items()}
        for currency in {
            item.currency_code
            for item in [*inputs, *held_commands]
            if not isinstance(item, records.GatewayResponded)
        }:
            wallets.update(system_wallet_id(a, currency) for a in SystemAccount)
            wallets.update(
                clearing_wallet_id(self.shard, peer, currency)
                for peer in self.shards.peers(self.shard)
            )
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
        remote = {w for w in wallets if owners.get(w, self.shard) != self.shard}
        accounts = store.load_accounts(conn, wallets - remote)
        if remote:
            accounts.update(store.load_remote_accounts(conn, remote, owners))
        for w, (_shard, status) in view.items():  # the directory's status is the truth
            if w in accounts and accounts[w].status != status:
                accounts[w] = accounts[w]._replace(status=status)
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
            shard=self.shard,
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
            self.settings.group,
            self.settings.events_topic,
            now,
            self.settings.gateway_requests_topic,
            self.settings.shard_credits_topic,
            self.settings.wallet_commands_topic,
        )
        self.totals["posted"] += plan.posted
        self.totals["held"] += plan.held
        self.totals["ignored_gateway_results"] += plan.ignored_results
        self.totals["failed"] += plan.failed
        self.totals["duplicates"] += plan.skipped_duplicates

    def _route(
        self,
        directory: psycopg.Connection,
        conn: psycopg.Connection,
        inputs: list[LedgerInput],
        now: datetime,
    ) -> tuple[list[LedgerInput], dict]:
        """This shard's inputs, the shard and status of every wallet they name, and those
        wallets copied here from the directory."""
        view = self._directory_view(directory, wallets_of(inputs))
        owners = {w: shard for w, (shard, _status) in view.items()}
        mine = [i for i in inputs if home_shard(i, owners) == self.shard]
        self.totals["other_shards"] += len(inputs) - len(mine)
        needed = sorted(w for w in wallets_of(mine) if w in owners and w not in self._copied)
        if needed:
            owned = {w for w in needed if owners[w] == self.shard}
            store.replicate_wallets(directory, conn, needed, owned, now)
            if len(self._copied) + len(needed) > COPIED_CACHED_MAX:
                self._copied.clear()
            self._copied.update(needed)
        return mine, view

    def _directory_view(self, directory: psycopg.Connection, wallets: set) -> dict:
        """Each customer wallet's shard and status, read from the directory every batch:
        a shard's copy of a wallet is for the foreign keys, the directory says whether it
        may move money (system wallets are on every shard and not listed)."""
        rows = store.wallet_directory(directory, list(wallets))
        return {w: (self.shards.shard_of_user(u), status) for w, (u, status) in rows.items()}

    def _decode(self, message: Message) -> LedgerInput:
        if message.topic() == self.settings.gateway_results_topic:
            return records.decode_gateway_responded(message.value())
        if message.topic() == self.settings.shard_credits_topic:
            return records.decode_credit_from_shard(message.value())
        return fast_records.decode_ledger_input(message.value())

    def relay_outbox(self, conn: psycopg.Connection, producer: Producer) -> int:
        topics = [
            self.settings.events_topic,
            self.settings.gateway_requests_topic,
            self.settings.shard_credits_topic,
            self.settings.wallet_commands_topic,
        ]
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

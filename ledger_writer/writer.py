"""The writer's loop: consume a batch → plan it → commit it with its offsets → relay events.

Exactly once: the offsets of a batch are committed in the same PostgreSQL transaction as
its postings, and consumption resumes from them; a replayed transaction id is skipped.
Events go out through the outbox, so a crash between commit and publish only delays them.

A record the ledger cannot store fails alone: ``admission`` finds the known cases before
planning, ``isolation`` the rest by writing a failed batch again in halves. The service
loop (connections, the shard's lock, reconnection) is ``runner``.

With N shards (LEDGER_DATABASE_URLS) one writer runs per shard, each in its own consumer
group reading every partition: it keeps the inputs whose payer is on its shard (and the
shard credits addressed to it), skips the rest with their offsets, and copies the wallets
it needs from the directory database before it plans (``replicas.replicate_wallets``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import psycopg
from confluent_kafka import Message, Producer

from domain import fast_records, records
from domain.exceptions import RecordDecodeError, UnprocessableRecord
from domain.reversals import reversal_of
from domain.shards import clearing_wallet_id
from domain.transactions import SystemAccount, system_wallet_id
from infra import metrics
from ledger_writer import admission, isolation, replicas, store
from ledger_writer.exceptions import LedgerWriterError
from ledger_writer.kafka_io import dead_letter, send_and_wait
from ledger_writer.planning import LedgerInput, TwoPhase, plan_batch, wallets_of
from ledger_writer.rows import Row
from ledger_writer.settings import LedgerSettings
from ledger_writer.sharding import home_shard

log = logging.getLogger("ledger_writer")

#: Each customer wallet a batch names: (its shard, its status), as the directory says.
DirectoryView: TypeAlias = dict[uuid.UUID, tuple[int, str]]

#: Wallets a shard's writer remembers having copied; the set is cleared when it is full.
COPIED_CACHED_MAX = 200_000


def _source(dead: Row) -> tuple[str, int, int]:
    """Where a dead letter came from, by its headers (``dead_letter_headers``)."""
    headers = dict(dead[3])
    return (
        headers["dlq.topic"].decode(),
        int(headers["dlq.partition"]),
        int(headers["dlq.offset"]),
    )


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
            "unprocessable": 0,
        }
        self.shards = settings.shard_map
        self.shard = self.shards.check_shard(settings.shard)
        #: Wallets already copied to this shard (they stay): no per-batch look-up for them.
        self._copied: set[object] = set()
        #: What the ledger cannot store of an input (``admission.problem``).
        self.admit: Callable[[LedgerInput], UnprocessableRecord | None] = admission.problem
        #: (topic, partition, offset) of the records the batch in hand has dead-lettered.
        self._dead_lettered: set[tuple[str, int, int]] = set()

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set (``runner.serve``: lock, consume, reconnect)."""
        from ledger_writer.runner import serve  # the runner builds on this class

        serve(self, stop)

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
        self._dead_lettered.clear()
        with _collector_paused(), metrics.BatchTimer("ledger", len(batch)):
            try:
                self._process(conn, producer, batch, directory)
            except Exception as error:
                if not batch or not isolation.caused_by_records(error):
                    raise
                self.totals["unprocessable"] += isolation.write_isolating(
                    batch,
                    lambda part, forced: self._process(conn, producer, part, directory, forced),
                    lambda message, reason: self._skip(conn, producer, message, reason),
                    error,
                )
        metrics.count_records("ledger", batch)

    def _process(
        self,
        conn: psycopg.Connection,
        producer: Producer,
        batch: Sequence[Message],
        directory: psycopg.Connection | None,
        forced: UnprocessableRecord | None = None,
    ) -> None:
        """One attempt at a batch, in one transaction. ``forced``: fail every record of
        it as unprocessable with this reason (``isolation`` passes one record)."""
        inputs: list[LedgerInput] = []
        by_event: dict[object, Message] = {}
        dead: list[Row] = []
        offsets: dict[tuple[str, int], int] = {}
        unprocessable: dict[uuid.UUID, UnprocessableRecord] = {}
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
            refusal = forced or self.admit(item)
            if refusal is not None:
                log.error(
                    "unprocessable record %s[%d]@%d: %s",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    refusal.message,
                )
                if isinstance(item, records.CreditFromShard):
                    # The payer's shard has moved the money: only a person can settle it.
                    dead.append(dead_letter(message, f"{refusal.code}: {refusal.message}"))
                    continue
                if not isinstance(item, records.GatewayResponded):
                    item = admission.storable(item)
                unprocessable[item.event_id] = refusal
            inputs.append(item)
            by_event[item.event_id] = message
        now = datetime.now(UTC)
        view: DirectoryView = {}
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
            accounts.update(replicas.load_remote_accounts(conn, remote, owners))
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
            unprocessable=unprocessable,
        )
        dead.extend(dead_letter(by_event[e], reason) for e, reason in plan.dead_letters.items())
        self._send_dead_letters(producer, dead)
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

    def _send_dead_letters(self, producer: Producer, dead: list[Row]) -> None:
        """Before the offsets move past them, so none is lost on a crash. A batch written
        again in parts (``isolation``) sends each of its dead letters once."""
        fresh = [d for d in dead if _source(d) not in self._dead_lettered]
        if fresh:
            send_and_wait(producer, fresh, self.settings.publish_timeout_ms / 1000)
            self._dead_lettered.update(map(_source, fresh))
            self.totals["dead_letters"] += len(fresh)
            metrics.ERRORS.labels("ledger", "DEAD_LETTER").inc(len(fresh))

    def _skip(
        self, conn: psycopg.Connection, producer: Producer, message: Message, reason: str
    ) -> None:
        """The last resort for a record not even its failure can be written for: to the
        dead-letter topic, and past it (its offset stored alone)."""
        log.error(
            "skipping %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(), reason
        )
        self._send_dead_letters(producer, [dead_letter(message, f"UNPROCESSABLE_RECORD: {reason}")])
        store.save_offsets(
            conn,
            {(message.topic(), message.partition()): message.offset() + 1},
            self.settings.group,
            datetime.now(UTC),
        )

    def _route(
        self,
        directory: psycopg.Connection,
        conn: psycopg.Connection,
        inputs: list[LedgerInput],
        now: datetime,
    ) -> tuple[list[LedgerInput], DirectoryView]:
        """This shard's inputs, the shard and status of every wallet they name, and those
        wallets copied here from the directory."""
        view = self._directory_view(directory, wallets_of(inputs))
        owners = {w: shard for w, (shard, _status) in view.items()}
        mine = [i for i in inputs if home_shard(i, owners) == self.shard]
        self.totals["other_shards"] += len(inputs) - len(mine)
        needed = sorted(w for w in wallets_of(mine) if w in owners and w not in self._copied)
        if needed:
            owned = {w for w in needed if owners[w] == self.shard}
            replicas.replicate_wallets(directory, conn, needed, owned, now)
            if len(self._copied) + len(needed) > COPIED_CACHED_MAX:
                self._copied.clear()
            self._copied.update(needed)
        return mine, view

    def _directory_view(
        self, directory: psycopg.Connection, wallets: set[uuid.UUID]
    ) -> DirectoryView:
        """Each customer wallet's shard and status, read from the directory every batch:
        a shard's copy of a wallet is for the foreign keys, the directory says whether it
        may move money (system wallets are on every shard and not listed)."""
        rows = replicas.wallet_directory(directory, list(wallets))
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
    metrics.serve_metrics("ledger")
    LedgerWriter(LedgerSettings()).run(stop)  # type: ignore[call-arg]


if __name__ == "__main__":
    main()

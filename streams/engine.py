"""The quix-streams glue: one input topic, one state store, one handler, exactly once.

The worker is a quix-streams ``Application`` reading ``wallet.commands`` (raw bytes in and
out; the records are ours, ``domain.records``) with one RocksDB store per partition, backed
by a changelog topic. Per record the engine decodes it, hands it to ``streams.flow.Flow``
with the partition's store transaction, and produces what the flow returns through the
application's producer. With ``processing_guarantee="exactly-once"`` every commit
(``STREAMS_COMMIT_INTERVAL_MS``) is one Kafka transaction holding the outputs, the
changelog records of the state changes and the consumed offsets: after a crash a record is
either wholly applied or not at all, and is never applied twice.

* A record that cannot be decoded, or that the flow refuses (``RecordRefused``), goes to
  ``wallet.commands.dlq`` in the same transaction, with the reason; the worker carries on.
* Anything else that goes wrong, above all a ``WalletInvariantError`` on the money path,
  stops the worker: its transaction is aborted and the error names the wallet, the record's
  partition and offset (never dead-lettered).
* Kafka going away is survived by crashing cleanly: a commit that cannot finish (the
  transaction timed out, the producer fenced or fatal) stops the run loop, and its clean-up
  is bounded (``STREAMS_FAILURE_EXIT_TIMEOUT_MS``: then the process exits anyway). The
  supervisor restarts the worker; the new one waits for Kafka, fences the old transaction
  with the same transactional id and takes its partitions back as the same static group
  member, so it resumes from the committed offsets and state in a few seconds.
* A clock thread (``Ticker``) sends ``ClockTicked`` to every partition each
  ``STREAMS_TICK_INTERVAL_MS``: the flow releases expired holds and sends terminal counts
  on it. A reader thread keeps every terminal's counts (``streams.terminals``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from quixstreams import Application, message_context

from domain import records
from domain.exceptions import RecordDecodeError
from domain.kafka_clients import batching_producer, hot_path_consumer
from domain.topics import TERMINAL_COUNTS, WALLET_COMMANDS, dead_letter_headers
from infra import metrics
from models.online import OnlineClassifier
from models.policy import default_policy
from models.simple import RulesAndTrees
from streams.decision import FEATURE_NAMES
from streams.exceptions import (
    EXIT_FAILED,
    EXIT_INVARIANT,
    KafkaUnavailable,
    RecordRefused,
    WalletInvariantError,
)
from streams.features import StreamFeatures
from streams.flow import Flow, FlowSettings
from streams.labels import LabelLearning, OnlineDecider
from streams.models_watch import ModelWatcher
from streams.policy_watch import PolicyWatcher
from streams.screening import Timeouts
from streams.settings import StreamSettings
from streams.terminals import TerminalBook, TerminalReader

log = logging.getLogger("streams")
#: The key of a clock tick (produced to a partition by number; no wallet id starts so).
TICK_KEY = b"\x00clock"
LOG_LEVELS = {"warn": "WARNING", "warning": "WARNING", "info": "INFO", "debug": "DEBUG"}


def build_flow(settings: StreamSettings, terminals: TerminalBook) -> Flow:
    """The flow with the models, the policy and the feature engine the settings name. A
    champion or a policy file that cannot be loaded stops the start (with the reason)."""
    features = StreamFeatures(settings.label_delay_days)
    # The labels train one classifier: it decides without a champion (once taught), and
    # scores in shadow beside one.
    learning = LabelLearning(OnlineClassifier())
    models = ModelWatcher(
        settings.models_dir,
        settings.model_name,
        OnlineDecider(RulesAndTrees(seed=settings.scorer_seed), learning),
        settings.label_delay_days,
        settings.models_check_interval_s,
        review_budget=settings.review_budget,
        online_challenger=learning.model,
    )
    policies = PolicyWatcher(
        settings.policy_file,
        default_policy(settings.review_threshold, settings.decline_threshold),
        FEATURE_NAMES,
        settings.policy_check_interval_s,
    )
    flow_settings = FlowSettings(
        timeouts=Timeouts(
            review=timedelta(seconds=settings.review_timeout_s),
            command=timedelta(seconds=settings.command_timeout_s),
        ),
        default_limits=settings.default_limits,
        grace_ms=settings.hold_grace_s * 1000,
        retention_ms=settings.decided_retention_s * 1000,
        terminal_flush_ms=settings.terminal_flush_ms,
    )
    return Flow(flow_settings, models, policies, features, learning, terminals)


def worker_identity(settings: StreamSettings) -> str:
    """Stable per worker (its group and state folder). As the transactional id, a restarted
    worker fences its predecessor's open transaction at once instead of waiting for its
    timeout; as the static group instance id, it takes its partitions back without a
    rebalance and without waiting out the dead member's session."""
    folder = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:12]
    return f"{settings.app_id}-{folder}"


transactional_id = worker_identity


class WorkerApplication(Application):
    """quix-streams' application with a bounded failure path: once the run loop stops on an
    error, ``give_up`` runs after ``give_up_after_s`` unless the process has exited by then
    (aborting a transaction or closing a consumer against a broker that is away can block
    far longer than a restart takes)."""

    def __init__(self, *args: Any, give_up: Callable[[], None], give_up_after_s: float, **kw: Any):
        super().__init__(*args, **kw)
        self.give_up = give_up
        self.give_up_after_s = give_up_after_s
        self.give_up_timer: threading.Timer | None = None

    def stop(self, fail: bool = False) -> None:
        if fail and self.give_up_timer is None:
            self.give_up_timer = threading.Timer(self.give_up_after_s, self.give_up)
            self.give_up_timer.daemon = True
            self.give_up_timer.start()
        super().stop(fail=fail)


def build_application(
    settings: StreamSettings, give_up: Callable[[], None] | None = None
) -> WorkerApplication:
    exactly_once = settings.processing_guarantee == "exactly-once"
    producer_config: dict[str, Any] = {
        **batching_producer(),
        # murmur2 is the Java client's partitioner: a wallet's records of every topic land
        # in the same partition number.
        "partitioner": "murmur2_random",
    }
    if exactly_once:
        producer_config["transactional.id"] = worker_identity(settings)
        producer_config["transaction.timeout.ms"] = settings.transaction_timeout_ms
    return WorkerApplication(
        broker_address=settings.kafka_bootstrap,
        consumer_group=settings.app_id,
        auto_offset_reset="earliest",
        commit_interval=settings.commit_interval_ms / 1000,
        processing_guarantee=settings.processing_guarantee,
        state_dir=settings.data_dir,
        loglevel=LOG_LEVELS.get(settings.log_level.lower(), settings.log_level.upper()),
        producer_extra_config=producer_config,
        consumer_extra_config={
            **metrics.consumer_statistics_config("streams"),
            "group.instance.id": worker_identity(settings),
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(1000, settings.session_timeout_ms // 5),
            **hot_path_consumer(),
        },
        give_up=give_up or _exit_now,
        give_up_after_s=settings.failure_exit_timeout_ms / 1000,
    )


def _exit_now() -> None:
    log.critical("stopping: clean-up after a failure did not finish in time; exiting now")
    os._exit(EXIT_FAILED)


def wait_for_kafka(settings: StreamSettings, topic: str) -> None:
    """Return once Kafka answers with a leader for every partition of ``topic``; raise
    ``KafkaUnavailable`` after ``kafka_wait_s``. A worker restarted while Kafka restarts
    waits here rather than failing again and again up the supervisor's backoff."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    deadline = time.monotonic() + settings.kafka_wait_s
    poll_s = settings.kafka_wait_poll_ms / 1000
    waited = False
    while True:
        try:
            metadata = admin.list_topics(topic, timeout=max(poll_s, 1.0)).topics.get(topic)
            if (
                metadata is not None
                and metadata.error is None
                and metadata.partitions
                and all(p.leader >= 0 and p.error is None for p in metadata.partitions.values())
            ):
                if waited:
                    log.warning("Kafka answers again; starting")
                return
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            raise KafkaUnavailable(
                f"Kafka at {settings.kafka_bootstrap} gave no leader for every partition of "
                f"{topic} within {settings.kafka_wait_s:.0f} s"
            )
        if not waited:
            log.warning("waiting for Kafka at %s (%s) ...", settings.kafka_bootstrap, topic)
            waited = True
        time.sleep(poll_s)


class Worker:
    """The application, its one dataframe, the flow, and the two threads beside them."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.prefix = settings.topic_prefix
        self.terminals = TerminalBook(StreamFeatures(settings.label_delay_days))
        self.flow = build_flow(settings, self.terminals)
        #: The error that stopped the run loop from a record's processing, if any.
        self.failure: BaseException | None = None
        self.app = build_application(settings, give_up=self.give_up)
        self.input_topic = self.prefix + WALLET_COMMANDS.name
        self.dead_letter_topic = self.prefix + WALLET_COMMANDS.dead_letter
        topic = self.app.topic(
            self.input_topic, key_deserializer="bytes", value_deserializer="bytes"
        )
        self.sdf = self.app.dataframe(topic)
        self.sdf.register_store()
        self.sdf.update(self.process, metadata=True)
        self.context = self.sdf.processing_context

    def process(self, value: bytes, key: bytes | None, _timestamp: int, _headers: Any) -> None:
        """Decode → flow → produce, for one record, inside the checkpoint's transaction."""
        context = message_context()
        partition = context.partition
        store = self.context.checkpoint.get_store_transaction(self.sdf.stream_id, partition)
        try:
            record = records.decode_wallet_command(value)
            outputs = self.flow.handle(store, partition, key or b"", record, value)
        except (RecordDecodeError, RecordRefused) as error:
            self.dead_letter(context, key, value, error.message)
            return
        except Exception as error:
            self.failure = error
            log.critical(
                "stopping: the record at %s[%s]@%s (key %r) broke the stream's state; "
                "nothing of this commit is kept",
                context.topic,
                partition,
                context.offset,
                key,
            )
            raise
        produce = self.context.producer.produce
        prefix = self.prefix
        for output in outputs:
            produce(topic=prefix + output.topic.name, key=output.key, value=output.value)

    def catch_up(self, reader: TerminalReader) -> int:
        """The terminal counts read to the end, tried again while a broker that has just
        restarted answers with a stale leader epoch or not at all (bounded)."""
        deadline = time.monotonic() + self.settings.kafka_wait_s
        while True:
            try:
                return reader.catch_up()
            except KafkaException as error:
                if time.monotonic() > deadline:
                    raise
                log.warning("terminal counts not read yet (%s); trying again", error)
                time.sleep(self.settings.kafka_wait_poll_ms / 1000)

    def dead_letter(self, context: Any, key: bytes | None, value: bytes, reason: str) -> None:
        log.warning(
            "dead letter from %s[%s]@%s: %s",
            context.topic,
            context.partition,
            context.offset,
            reason,
        )
        self.context.producer.produce(
            topic=self.dead_letter_topic,
            key=key,
            value=value,
            headers=dead_letter_headers(context.topic, context.partition, context.offset, reason),
        )

    def give_up(self) -> None:
        """The failure path's clean-up overran: exit now, with the status the failure asks
        for. Nothing uncommitted is kept: the restarted worker fences this one's transaction
        and resumes from the committed offsets and state, exactly as after a kill -9."""
        invariant = isinstance(self.failure, WalletInvariantError)
        status = EXIT_INVARIANT if invariant else EXIT_FAILED
        log.critical(
            "stopping: clean-up after the failure did not finish in %d ms; exiting now with "
            "status %d (the restarted worker fences this one's open transaction)",
            self.settings.failure_exit_timeout_ms,
            status,
        )
        logging.shutdown()
        os._exit(status)

    def fence_predecessor(self) -> None:
        """Abort whatever transaction this worker's predecessor left open (killed, or cut
        off by a broker restart) before reading anything committed: until it is aborted it
        holds back every read-committed reader of its partitions (the terminal catch-up
        below would wait out the transaction timeout). A throwaway producer with the same
        transactional id does it; the application's own producer then starts clean."""
        if self.settings.processing_guarantee != "exactly-once":
            return
        producer = Producer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "transactional.id": worker_identity(self.settings),
                "transaction.timeout.ms": self.settings.transaction_timeout_ms,
            }
        )
        deadline = time.monotonic() + self.settings.kafka_wait_s
        while True:
            try:
                producer.init_transactions(self.settings.transaction_timeout_ms / 1000)
                return
            except KafkaException as error:
                if not error.args[0].retriable() or time.monotonic() > deadline:
                    raise
                log.warning("fencing the previous transaction: %s; trying again", error)

    def run(self) -> None:
        self.fence_predecessor()
        reader = TerminalReader(
            self.settings.kafka_bootstrap, self.prefix + TERMINAL_COUNTS.name, self.terminals
        )
        read = self.catch_up(reader)
        log.info("terminal counts: %d batches read", read)
        reader.start()
        ticker = Ticker(self.settings, self.input_topic)
        ticker.start()
        try:
            self.app.run()
        finally:
            ticker.stop()
            reader.stop()


class Ticker:
    """Sends ``ClockTicked`` to every partition of ``wallet.commands`` every interval (a
    plain producer: a tick is only a nudge, repeated by every worker and harmless twice)."""

    def __init__(self, settings: StreamSettings, topic: str) -> None:
        self.topic = topic
        self.interval_s = settings.tick_interval_ms / 1000
        self.producer = Producer(
            {"bootstrap.servers": settings.kafka_bootstrap, **batching_producer()}
        )
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="clock", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)
        self.producer.flush(5)

    def partitions(self) -> list[int]:
        """The topic's partitions, asked again until Kafka answers: without them no hold
        or review would ever expire, so the clock must not die of a broker restarting."""
        while not self.stop_event.is_set():
            try:
                metadata = self.producer.list_topics(self.topic, timeout=10).topics[self.topic]
                if metadata.partitions:
                    return sorted(metadata.partitions)
            except KafkaException as error:
                log.warning("clock: no metadata for %s yet (%s)", self.topic, error)
            self.stop_event.wait(self.interval_s)
        return []

    def _run(self) -> None:
        partitions = self.partitions()
        while not self.stop_event.wait(self.interval_s):
            now = datetime.now(UTC)
            for partition in partitions:
                tick = records.ClockTicked(partition=partition, ticked_at=now)
                try:
                    self.producer.produce(
                        self.topic, key=TICK_KEY, value=records.encode(tick), partition=partition
                    )
                except BufferError:  # Kafka away for long: the next tick says the same
                    break
            self.producer.poll(0)

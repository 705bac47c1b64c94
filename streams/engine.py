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
* A clock thread (``Ticker``) sends ``ClockTicked`` to every partition each
  ``STREAMS_TICK_INTERVAL_MS``: the flow releases expired holds and sends terminal counts
  on it. A reader thread keeps every terminal's counts (``streams.terminals``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer
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
from streams.exceptions import RecordRefused
from streams.features import StreamFeatures
from streams.flow import Flow, FlowSettings
from streams.labels import LabelLearning
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
    models = ModelWatcher(
        settings.models_dir,
        settings.model_name,
        RulesAndTrees(seed=settings.scorer_seed),
        settings.label_delay_days,
        settings.models_check_interval_s,
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
    learning = LabelLearning(OnlineClassifier())
    return Flow(flow_settings, models, policies, features, learning, terminals)


def transactional_id(settings: StreamSettings) -> str:
    """Stable per worker (its group and state folder): a restarted worker fences its
    killed predecessor's open transaction at once instead of waiting for its timeout."""
    folder = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:12]
    return f"{settings.app_id}-{folder}"


def build_application(settings: StreamSettings) -> Application:
    exactly_once = settings.processing_guarantee == "exactly-once"
    producer_config: dict[str, Any] = {
        **batching_producer(),
        # murmur2 is the Java client's partitioner: a wallet's records of every topic land
        # in the same partition number.
        "partitioner": "murmur2_random",
    }
    if exactly_once:
        producer_config["transactional.id"] = transactional_id(settings)
        producer_config["transaction.timeout.ms"] = settings.transaction_timeout_ms
    return Application(
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
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(1000, settings.session_timeout_ms // 5),
            **hot_path_consumer(),
        },
    )


class Worker:
    """The application, its one dataframe, the flow, and the two threads beside them."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.prefix = settings.topic_prefix
        self.terminals = TerminalBook(StreamFeatures(settings.label_delay_days))
        self.flow = build_flow(settings, self.terminals)
        self.app = build_application(settings)
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
        except Exception:
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

    def run(self) -> None:
        reader = TerminalReader(
            self.settings.kafka_bootstrap, self.prefix + TERMINAL_COUNTS.name, self.terminals
        )
        read = reader.catch_up()
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

    def _run(self) -> None:
        metadata = self.producer.list_topics(self.topic, timeout=30).topics[self.topic]
        partitions = sorted(metadata.partitions)
        while not self.stop_event.wait(self.interval_s):
            now = datetime.now(UTC)
            for partition in partitions:
                tick = records.ClockTicked(partition=partition, ticked_at=now)
                self.producer.produce(
                    self.topic, key=TICK_KEY, value=records.encode(tick), partition=partition
                )
            self.producer.poll(0)

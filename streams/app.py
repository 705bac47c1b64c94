"""The faust app: topics and tables declared once, agents that decode → decide → send.

Every topic is raw bytes here; decoding is ours (``domain.records``) so that a record that
does not fit goes to the topic's dead-letter companion instead of crashing an agent. All
input topics are keyed by wallet and share one partition count, so the ``wallet_state``
table is co-partitioned with each of them.

Run: ``python -m streams.app`` (settings from the environment) or ``walletpipe run``.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import faust
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from domain import records
from domain.exceptions import RecordDecodeError
from domain.topics import (
    FRAUD_LABELS,
    LEDGER_COMMANDS,
    LEDGER_EVENTS,
    LIMITS_CHANGES,
    REVIEWS_DECISIONS,
    REVIEWS_REQUESTED,
    TERMINAL_ACTIVITY,
    TRANSACTIONS_REJECTED,
    TRANSACTIONS_REQUESTED,
    WALLET_CREDITS,
    WALLET_PARTITIONS,
    TopicSpec,
    dead_letter_headers,
)
from models.features import CustomerState, TerminalState
from models.online import OnlineClassifier
from models.policy import default_policy
from models.simple import RulesAndTrees
from streams.decision import FEATURE_NAMES, assess
from streams.exceptions import StreamsError
from streams.features import StreamFeatures, event_of
from streams.labels import LabelLearning, ScoredTransactions
from streams.limits import LimitSet, LimitUsage, applicable
from streams.models_watch import ModelWatcher
from streams.policy_watch import PolicyWatcher
from streams.recent import RecentDecisions
from streams.reviews import PendingReviews
from streams.screening import decide_review, screen
from streams.settings import StreamSettings
from streams.staging import StagedWallets
from streams.wallet_state import WalletState

log = logging.getLogger("streams")
#: One coroutine per agent and partition, on purpose: with more, faust can commit the offset
#: of a record another coroutine is still processing (faust-streaming issue #606), and a
#: crash then loses it. tests/unit/test_stream_app.py keeps it at 1.
AGENT_CONCURRENCY = 1
#: The published terminal day counts: one changelog partition (see ``build_app``).
TERMINAL_DAYS_PARTITIONS = 1
#: How often (in labels) the worker logs how its label-learnt classifier is doing.
LABELS_LOG_EVERY = 500
Send = tuple[Any, bytes, bytes]


def build_app(settings: StreamSettings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.store,
        datadir=str(settings.data_dir),
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=WALLET_PARTITIONS,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        # Outputs and changelog records leave in batches, not one produce request each.
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=settings.producer_batch_bytes_max,
        web_enabled=False,
    )

    def topic(spec: TopicSpec) -> faust.TopicT:
        return app.topic(
            settings.topic_prefix + spec.name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=spec.partitions,
        )

    requested, commands = topic(TRANSACTIONS_REQUESTED), topic(LEDGER_COMMANDS)
    terminal_activity = topic(TERMINAL_ACTIVITY)
    rejected, ledger_events = topic(TRANSACTIONS_REJECTED), topic(LEDGER_EVENTS)
    wallet_credits, limits_changes = topic(WALLET_CREDITS), topic(LIMITS_CHANGES)

    # Two tables, keyed by wallet like every input topic, so a wallet's state lives in its
    # partition. Each value holds several kinds of state (facets), read once and written at
    # most once per record (streams/staging.py): "wallets" the small state every agent
    # needs (balance and holds, limits, counters, held reviews); "wallet-history" the
    # larger state only screening and labels need (the customer's feature state, recent
    # decisions, the features recent requests were scored with until their labels arrive).
    def staged(name: str) -> StagedWallets:
        # Keys are the records' keys, a wallet id's text in bytes. ``key_type=bytes`` makes
        # the changelog's key serializer "raw": by default it is JSON, which writes bytes
        # through unencoded but reads them back as JSON, so a standby copy or a recovery
        # failed on every wallet id ("Error in recovery") and stopped recovering.
        return StagedWallets(
            app.Table(name, default=None, partitions=WALLET_PARTITIONS, key_type=bytes)
        )

    wallets, history = staged("wallets"), staged("wallet-history")
    wallet_state, wallet_limits = wallets.facet("state"), wallets.facet("limits")
    limit_usage, pending_reviews = wallets.facet("usage"), wallets.facet("reviews")
    customer_features, recent_decisions = history.facet("customer"), history.facet("decided")
    scored_transactions = history.facet("scored")
    # A terminal is shared by wallets of every partition: its day counts are kept by one
    # agent per terminal partition ("terminals", keyed by terminal) and published whole to
    # every worker ("terminal-days", a GlobalTable the decision agent only reads); see
    # streams/features.py for why a copy seconds old is exact. One changelog partition
    # written through the producer's partitioner: faust's advice for a GlobalTable with
    # several workers (more partitions can leave a worker stuck recovering it). Their keys
    # are the terminal as a str, JSON-encoded in the changelogs: a worker replaying them
    # (the GlobalTable's standby copy on every worker, a recovery) decodes keys as JSON.
    terminals = app.Table("terminals", default=None, partitions=WALLET_PARTITIONS)
    terminal_days = app.GlobalTable(
        "terminal-days",
        default=None,
        partitions=TERMINAL_DAYS_PARTITIONS,
        use_partitioner=True,
        recovery_buffer_size=1,
    )
    stream_features = StreamFeatures(settings.label_delay_days)
    fraud_labels = topic(FRAUD_LABELS)
    reviews_requested, reviews_decisions = topic(REVIEWS_REQUESTED), topic(REVIEWS_DECISIONS)
    default_limits = settings.default_limits
    # The registry's champion decides and its challengers score in shadow; without a
    # champion the online scorer does, one per worker, learning online from what it scores
    # (not from table state: after a restart it learns again; its rules carry meanwhile).
    # A champion that cannot be loaded stops the start (ArtifactError names it).
    models = ModelWatcher(
        settings.models_dir,
        settings.model_name,
        RulesAndTrees(seed=settings.scorer_seed),
        settings.label_delay_days,
        settings.models_check_interval_s,
    )
    # The analysts' policy file if one is set (refused at start-up if malformed), else
    # today's thresholds; a timer below swaps in a changed file's policy.
    policies = PolicyWatcher(
        settings.policy_file,
        default_policy(settings.review_threshold, settings.decline_threshold),
        FEATURE_NAMES,
        settings.policy_check_interval_s,
    )
    failed_rules: Counter[str] = Counter()  # bounded by the policy's rules
    # Learns from delayed fraud labels with the features each transaction was scored with.
    # A shadow for now: its score does not decide (the rules above do); like the scorer it
    # lives in the worker and learns again after a restart.
    label_learning = LabelLearning(OnlineClassifier())
    review_timeout = timedelta(seconds=settings.review_timeout_s)
    targets = {
        records.PostTransaction: commands,
        records.TransactionRejected: rejected,
        records.ReviewRequested: reviews_requested,
    }

    def load(wallet_id: uuid.UUID) -> WalletState:
        return WalletState.from_json(wallet_state.get(str(wallet_id).encode()))

    def save(wallet_id: uuid.UUID, state: WalletState) -> None:
        wallet_state[str(wallet_id).encode()] = state.to_json()

    def load_usage(wallet_id: uuid.UUID) -> LimitUsage:
        return LimitUsage.from_json(limit_usage.get(str(wallet_id).encode()))

    def save_usage(wallet_id: uuid.UUID, usage: LimitUsage) -> None:
        limit_usage[str(wallet_id).encode()] = usage.to_json()

    prefix = settings.topic_prefix
    dead_letter_topics = {
        prefix + spec.name: app.topic(
            prefix + spec.dead_letter, key_serializer="raw", value_serializer="raw"
        )
        for spec in (
            TRANSACTIONS_REQUESTED,
            LEDGER_EVENTS,
            WALLET_CREDITS,
            LIMITS_CHANGES,
            REVIEWS_DECISIONS,
            FRAUD_LABELS,
            TERMINAL_ACTIVITY,
        )
    }

    def load_reviews(wallet_id: uuid.UUID) -> PendingReviews:
        return PendingReviews.from_json(pending_reviews.get(str(wallet_id).encode()))

    async def dead_letter(event: Any, reason: str) -> None:
        message = event.message
        log.warning(
            "dead letter from %s[%s]@%s: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
        )
        await dead_letter_topics[message.topic].send(
            key=event.key,
            value=event.value,
            headers=dead_letter_headers(message.topic, message.partition, message.offset, reason),
        )

    def check_key(event: Any, wallet_id: uuid.UUID | None) -> None:
        # The table lives in the partition of the event: a record keyed by another wallet
        # than its own would read and write the wrong wallet's state.
        if wallet_id is None or event.key != str(wallet_id).encode():
            raise RecordDecodeError("record key is not the wallet it is about")

    def on_request(event: Any) -> list[Send]:
        request = records.decode_requested(event.value)
        wallet_id = request.source_wallet_id or request.destination_wallet_id
        check_key(event, wallet_id)
        assert wallet_id is not None
        key = str(wallet_id).encode()
        state, usage = load(wallet_id), load_usage(wallet_id)
        limit_set = LimitSet.from_json(wallet_limits.get(key))
        limits = applicable(request, limit_set, default_limits)
        decided = RecentDecisions.from_json(recent_decisions.get(key))
        if str(request.transaction_id) in state.holds or str(request.transaction_id) in decided:
            return []  # a replay (redelivery after a crash, or a retried publish): decided
        fraud_event = event_of(request)
        stored = customer_features.get(key)
        customer = None if stored is None else CustomerState.from_json(stored)
        published = terminal_days.get(fraud_event.terminal)
        terminal = None if published is None else TerminalState.from_json(published)
        x = stream_features.features(fraud_event, customer, terminal)
        assessment = assess(request, x, models.score(x), policies.policy)
        failed_rules.update(assessment.failed_rules)
        reviews = load_reviews(wallet_id)
        outcome = screen(request, state, limits, usage, assessment, reviews, review_timeout)
        counted = isinstance(outcome.command, records.PostTransaction | records.ReviewRequested)
        scored = ScoredTransactions.from_json(scored_transactions.get(key))
        if counted:  # it moves money: it enters the customer's and the terminal's history
            customer = stream_features.observe(fraud_event, customer)
            customer_features[key] = customer.to_json()
            scored.remember(
                str(request.transaction_id), x, fraud_event.terminal, fraud_event.time_s
            )
        else:
            scored.remember(str(request.transaction_id), x)
        scored_transactions[key] = scored.to_json()
        decided.remember(str(request.transaction_id))
        recent_decisions[key] = decided.to_json()
        sends = finish(wallet_id, outcome, state, usage, reviews, event.key)
        if counted:
            sends.append(terminal_send(fraud_event.terminal, fraud_event.time_s, fraud=False))
        return sends

    def terminal_send(terminal: str, time_s: int, fraud: bool) -> Send:
        activity = records.TerminalActivity(terminal=terminal, time_s=time_s, fraud=fraud)
        return (terminal_activity, terminal.encode(), records.encode(activity))

    def finish(
        wallet_id: uuid.UUID,
        outcome: Any,
        state: WalletState,
        usage: LimitUsage,
        reviews: PendingReviews,
        key: bytes,
    ) -> list[Send]:
        if outcome.state_changed:
            save(wallet_id, state)
        if outcome.usage_changed:
            save_usage(wallet_id, usage)
        if outcome.reviews_changed:
            pending_reviews[str(wallet_id).encode()] = reviews.to_json()
        if outcome.command is None:
            return []
        return [(targets[type(outcome.command)], key, records.encode(outcome.command))]

    def on_review_decided(event: Any) -> list[Send]:
        decided = records.decode_review_decided(event.value)
        check_key(event, decided.wallet_id)
        wallet_id = decided.wallet_id
        state, usage, reviews = load(wallet_id), load_usage(wallet_id), load_reviews(wallet_id)
        outcome = decide_review(decided, state, usage, reviews)
        return finish(wallet_id, outcome, state, usage, reviews, event.key)

    def on_ledger_event(event: Any) -> list[Send]:
        posted = records.decode_ledger_event(event.value)
        source, destination = posted.source_wallet_id, posted.destination_wallet_id
        check_key(event, source or destination)
        transaction_id = str(posted.transaction_id)
        settle_limits(source or destination, transaction_id, posted)
        if not isinstance(posted, records.TransactionPosted):
            if source is not None:  # failed, or a discarded repeat: give the hold back
                state = load(source)
                if state.release(transaction_id):
                    save(source, state)
            return []
        if source is not None:
            state = load(source)
            spent = posted.moved_amount + posted.fee_amount  # a partial capture spent less
            if state.settle(transaction_id, spent):
                save(source, state)
        if destination is None:
            return []
        if source is None:  # a deposit is keyed by its destination: credit it here
            state = load(destination)
            if state.credit(transaction_id, posted.moved_amount):
                save(destination, state)
            return []
        # The destination lives in another partition: re-key the credit to it.
        credit = records.WalletCredited(
            wallet_id=destination,
            transaction_id=posted.transaction_id,
            amount=posted.moved_amount,
            currency_code=posted.currency_code,
        )
        return [(wallet_credits, str(destination).encode(), records.encode(credit))]

    def settle_limits(wallet_id: Any, transaction_id: str, event: records.LedgerEvent) -> None:
        """A posted transaction stays counted; a failed one or a discarded repeat gives
        back what it took from the limit counters of the wallet it was keyed by."""
        usage = load_usage(wallet_id)
        if isinstance(event, records.TransactionPosted):
            changed = usage.settle(transaction_id)
        else:
            changed = usage.give_back(transaction_id)
        if changed:
            save_usage(wallet_id, usage)

    def on_limits_changed(event: Any) -> list[Send]:
        change = records.decode_wallet_limits_changed(event.value)
        check_key(event, change.wallet_id)
        limit_set = LimitSet.from_json(wallet_limits.get(event.key))
        if limit_set.apply(change):
            wallet_limits[event.key] = limit_set.to_json()
        return []

    def on_label(event: Any) -> list[Send]:
        label = records.decode_fraud_labelled(event.value)
        check_key(event, label.wallet_id)
        scored = ScoredTransactions.from_json(scored_transactions.get(event.key))
        transaction_id = str(label.transaction_id)
        features = scored.label(transaction_id, label.is_fraud)
        if features is None:
            return []  # labelled already: a redelivery
        label_learning.learn(features, label.is_fraud)
        scored_transactions[event.key] = scored.to_json()
        if label_learning.labels % LABELS_LOG_EVERY == 0:
            log.info("label learning: %s", label_learning.summary())
        counted_at = scored.counted_at(transaction_id) if label.is_fraud else None
        if counted_at is None:
            return []  # only a known fraud changes a terminal's features
        return [terminal_send(*counted_at, fraud=True)]

    def on_terminal_activity(event: Any) -> list[Send]:
        """Count a transaction (or a known fraud) at its terminal, with the engine's code,
        and publish the terminal's days to every worker. The one writer of its terminal."""
        activity = records.decode_terminal_activity(event.value)
        if event.key != activity.terminal.encode():
            raise RecordDecodeError("record key is not the terminal it is about")
        terminal = activity.terminal
        state = TerminalState.from_json(terminals.get(terminal))
        if activity.fraud:
            stream_features.label_terminal(terminal, activity.time_s, state)
        else:
            stream_features.observe_terminal(terminal, activity.time_s, state)
        value = state.to_json()
        terminals[terminal] = value
        terminal_days[terminal] = value
        return []

    def on_credit(event: Any) -> list[Send]:
        credit = records.decode_wallet_credited(event.value)
        check_key(event, credit.wallet_id)
        state = load(credit.wallet_id)
        if state.credit(str(credit.transaction_id), credit.amount):
            save(credit.wallet_id, state)
        return []

    def discard() -> None:
        wallets.discard()
        history.discard()

    async def serve(stream: faust.StreamT, handle: Any) -> None:
        """Decode → decide → send, one wallet's records in order. A record's table changes
        are written (its wallet once) before its outputs are sent; faust acknowledges it
        when the loop asks for the next. Handling and writing never await, so the agents
        sharing the staged tables never see each other's half-handled record. A record that
        cannot be decoded or processed goes to the dead-letter topic; the agent carries on.

        One record at a time, on purpose: ``Stream.take_events`` batches measured no faster
        here (bench/streams: faust's per-record cost dominates), and in the e2e suite a
        batched agent once stalled for a minute until the next rebalance."""
        async for event in stream.events():
            try:
                sends = handle(event)
            except (RecordDecodeError, StreamsError) as error:
                discard()
                await dead_letter(event, error.message)
                continue
            except Exception as error:  # noqa: BLE001 - one bad record must not stop a wallet
                discard()
                log.exception("processing failed")
                await dead_letter(event, f"processing failed: {error!r}")
                continue
            wallets.flush()
            history.flush()
            for topic, key, value in sends:
                await topic.send(key=key, value=value)

    @app.timer(interval=settings.models_check_interval_s)
    async def reload_models() -> None:
        models.poll()

    @app.timer(interval=settings.policy_check_interval_s)
    async def reload_policy() -> None:
        policies.poll()
        if failed_rules:
            log.warning("policy rules that failed to evaluate (did not match): %s", failed_rules)
            failed_rules.clear()

    @app.agent(requested, name="screen-requests", concurrency=AGENT_CONCURRENCY)
    async def screen_requests(stream: faust.StreamT) -> None:
        await serve(stream, on_request)

    @app.agent(ledger_events, name="settle-ledger-events", concurrency=AGENT_CONCURRENCY)
    async def settle(stream: faust.StreamT) -> None:
        await serve(stream, on_ledger_event)

    @app.agent(limits_changes, name="apply-limit-changes", concurrency=AGENT_CONCURRENCY)
    async def apply_limit_changes(stream: faust.StreamT) -> None:
        await serve(stream, on_limits_changed)

    @app.agent(reviews_decisions, name="apply-review-decisions", concurrency=AGENT_CONCURRENCY)
    async def apply_review_decisions(stream: faust.StreamT) -> None:
        await serve(stream, on_review_decided)

    @app.agent(fraud_labels, name="learn-fraud-labels", concurrency=AGENT_CONCURRENCY)
    async def learn_fraud_labels(stream: faust.StreamT) -> None:
        await serve(stream, on_label)

    @app.agent(terminal_activity, name="count-terminals", concurrency=AGENT_CONCURRENCY)
    async def count_terminals(stream: faust.StreamT) -> None:
        await serve(stream, on_terminal_activity)

    @app.agent(wallet_credits, name="apply-credits", concurrency=AGENT_CONCURRENCY)
    async def apply_credits(stream: faust.StreamT) -> None:
        await serve(stream, on_credit)

    return app


def create_changelog_topics(app: faust.App, bootstrap: str, timeout_s: float = 30.0) -> None:
    """Create the tables' changelog topics before the worker starts.

    faust creates a missing changelog while it starts, but its producer's metadata may not
    know the topic yet when the first write of a new table comes (PartitionsMismatch: "0
    partitions"), which sent those records to the dead-letter topic. Compacted, like faust's.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [
        NewTopic(
            table.changelog_topic.get_topic_name(),
            num_partitions=table.partitions or WALLET_PARTITIONS,
            replication_factor=1,
            config={"cleanup.policy": "compact"},
        )
        for table in app.tables.values()
        if table.changelog_topic.get_topic_name() not in existing
    ]
    for future in admin.create_topics(missing).values() if missing else ():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def main() -> None:
    settings = StreamSettings()  # type: ignore[call-arg]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings)
    create_changelog_topics(app, settings.kafka_bootstrap)
    sys.argv = [sys.argv[0], "worker", "--without-web", "--loglevel", settings.log_level]
    # aiokafka and faust log every record they send at DEBUG, and the worker's logging setup
    # leaves those loggers enabled for it: a LogRecord per message costs more than the send.
    for name in ("aiokafka", "faust"):
        logging.getLogger(name).setLevel(logging.getLevelName(settings.log_level.upper()))
    app.main()


if __name__ == "__main__":
    main()

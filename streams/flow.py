"""The record flow of a wallet partition: each ``wallet.commands`` record → state → outputs.

Plain code over a ``streams.store.Store`` (the partition's quix-streams transaction, or a
dict in the unit tests), no Kafka: ``Flow.handle`` takes one decoded record and returns the
records to send; the engine (``streams/engine.py``) sends them in the same Kafka
transaction as the state changes and the consumed offset.

* ``TransactionRequested``: a replay (its ``t:<id>`` exists) is dropped; otherwise limits,
  features and score, policy, reservation (``streams.screening``), the decision out, and
  the request forwarded to ``transactions.requested``.
* ledger outcomes (``TransactionPosted``, ``TransactionFailed``, ``DuplicateDiscarded``)
  settle or release exactly the hold they name; one that does not fit raises
  ``WalletInvariantError`` (the worker stops). A repeat of an applied one changes nothing.
* ``WalletCredited``: the credited wallet's partition makes a posted credit spendable, once.
* ``WalletLimitsChanged``, ``ReviewDecided``, ``FraudLabelled``: limits, reviews, labels.
* ``ClockTicked``: holds past their deadline are released (``Holds expire`` in
  docs/topics.md), decided transactions past their retention forgotten, terminal counts sent.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from datetime import UTC, datetime
from typing import Any

from domain import fast_records, records
from domain.records import (
    ClockTicked,
    DuplicateDiscarded,
    FraudLabelled,
    ReviewDecided,
    TransactionFailed,
    TransactionPosted,
    TransactionRequested,
    WalletCredited,
    WalletLimitsChanged,
)
from domain.topics import (
    LEDGER_COMMANDS,
    REVIEWS_REQUESTED,
    TRANSACTIONS_REJECTED,
    TRANSACTIONS_REQUESTED,
    TopicSpec,
)
from infra import metrics
from models.features import FEATURE_NAMES, CustomerState
from streams.clock import ClockHandlers
from streams.customer_codec import decode_customer, encode_customer
from streams.decided import OPEN, Decided, Status
from streams.decision import assess
from streams.exceptions import RecordRefused, UnknownLabelledTransaction, WalletInvariantError
from streams.features import StreamFeatures, event_of
from streams.labels import LabelLearning
from streams.limits import applicable
from streams.models_watch import ModelWatcher
from streams.outputs import FlowSettings, Output
from streams.policy_watch import PolicyWatcher
from streams.screening import decide_review, screen
from streams.store import (
    CUSTOMER,
    EXPIRE,
    FORGET,
    FORGET_CREDIT,
    WALLET,
    Schedule,
    Store,
    TerminalPending,
    WalletValue,
    credited_key,
    decided_key,
)
from streams.terminals import TerminalBook

log = logging.getLogger("streams")
#: Customer states kept decoded in memory, the most recently used (at most ~40 KB each).
CUSTOMERS_CACHED_MAX = 4_096
#: How often (in labels) the worker logs how its label-learnt classifier is doing.
LABELS_LOG_EVERY = 500
_TARGETS: dict[type, TopicSpec] = {
    records.PostTransaction: LEDGER_COMMANDS,
    records.TransactionRejected: TRANSACTIONS_REJECTED,
    records.ReviewRequested: REVIEWS_REQUESTED,
}


#: ``/metrics``: decisions by outcome (a request leaves the stream SENT to the ledger when
#: approved), each counter looked up once, not per request.
_DECISION_NAMES = {Status.SENT: "approved", Status.REVIEW: "review", Status.REJECTED: "declined"}
_DECISIONS_BY_STATUS = {
    status: metrics.DECISIONS.labels(_DECISION_NAMES.get(status, status.name.lower()))
    for status in Status
}


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _wallet_key(key: bytes, wallet_id: object) -> None:
    """A record keyed by another wallet than its own would read and write the wrong
    wallet's state: refused (dead-lettered)."""
    if wallet_id is None or key != str(wallet_id).encode():
        raise RecordRefused("record key is not the wallet it is about")


class Flow(ClockHandlers):
    """The handlers of every kind of ``wallet.commands`` record, for one worker."""

    def __init__(
        self,
        settings: FlowSettings,
        models: ModelWatcher,
        policies: PolicyWatcher,
        features: StreamFeatures,
        learning: LabelLearning,
        terminals: TerminalBook,
        clock_ms: Any = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.policies = policies
        self.features = features
        self.learning = learning
        self.terminals = terminals
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.failed_rules: Counter[str] = Counter()  # bounded by the policy's rules
        #: The customer states of the busiest wallets, as last written (``customer``).
        self.customers: OrderedDict[bytes, tuple[bytes, CustomerState]] = OrderedDict()
        #: partition -> when its oldest unsent terminal count was taken (ms; a hint: the
        #: partition's clock ticks send whatever a previous owner left).
        self.pending_since: dict[int, int] = {}

    def handle(self, store: Store, partition: int, key: bytes, record: Any, raw: bytes) -> list:
        now_ms = self.clock_ms()
        out: list[Output] = []
        kind = type(record)
        if kind is TransactionRequested:
            self.on_request(store, partition, key, record, raw, now_ms, out)
        elif kind in (TransactionPosted, TransactionFailed, DuplicateDiscarded):
            self.on_outcome(store, key, record, now_ms)
        elif kind is WalletCredited:
            self.on_credit(store, key, record, now_ms)
        elif kind is WalletLimitsChanged:
            self.on_limits(store, key, record)
        elif kind is ReviewDecided:
            self.on_review(store, key, record, now_ms, out)
        elif kind is FraudLabelled:
            self.on_label(store, partition, key, record, now_ms)
        elif kind is ClockTicked:
            self.on_tick(store, partition, now_ms, out)
            return out
        else:
            raise RecordRefused(f"the stream does not take {kind.__name__} records")
        since = self.pending_since.get(partition)
        if since is not None and now_ms - since >= self.settings.terminal_flush_ms:
            self.send_terminal_counts(store, partition, out)
        return out

    # ---- requests --------------------------------------------------------------------

    def on_request(
        self,
        store: Store,
        partition: int,
        key: bytes,
        request: TransactionRequested,
        raw: bytes,
        now_ms: int,
        out: list[Output],
    ) -> None:
        _wallet_key(key, request.source_wallet_id or request.destination_wallet_id)
        transaction_id = str(request.transaction_id)
        if store.get_bytes(decided_key(transaction_id), key) is not None:
            return  # a replay (a retried publish): decided once, never again
        wallet = WalletValue.decode(store.get_bytes(WALLET, key))
        limits = applicable(request, wallet.limits, self.settings.default_limits)
        event = event_of(request)
        customer = self.customer(store, key)
        self.terminals.drain()
        x = self.features.features(event, customer, self.terminals.get(event.terminal))
        assessment = assess(request, x, self.models.score(x), self.policies.policy)
        if assessment.failed_rules:
            self.failed_rules.update(assessment.failed_rules)
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        outcome = screen(
            request,
            wallet.state,
            limits,
            wallet.usage,
            assessment,
            wallet.reviews_open,
            self.settings.timeouts,
            now,
        )
        decided = outcome.decided
        _DECISIONS_BY_STATUS[decided.status].inc()
        decided.remember_features(x)
        schedule = Schedule(store)
        if decided.status in OPEN:  # it moves money: it enters the customer's and terminal's
            customer = self.features.observe(event, customer)
            self.keep_customer(store, key, customer)
            decided.terminal, decided.time_s = event.terminal, event.time_s
            TerminalPending(store).add(event.terminal, event.time_s, False)
            self.pending_since.setdefault(partition, now_ms)
            schedule.add(
                now_ms,
                decided.deadline_ms + self.settings.grace_ms,
                EXPIRE,
                key.decode(),
                transaction_id,
            )
        else:
            schedule.add(
                now_ms, now_ms + self.settings.retention_ms, FORGET, key.decode(), transaction_id
            )
        if decided.status is Status.REVIEW:
            wallet.reviews_open += 1
        if outcome.wallet_changed or decided.status is Status.REVIEW:
            store.set_bytes(WALLET, wallet.encode(), key)
        store.set_bytes(decided_key(transaction_id), decided.encode(), key)
        command = outcome.command
        out.append(Output(_TARGETS[type(command)], key, fast_records.encode(command)))
        out.append(Output(TRANSACTIONS_REQUESTED, key, raw))

    def customer(self, store: Store, key: bytes) -> CustomerState | None:
        """The wallet's customer state: from memory when the store holds the very bytes it
        was written as (a busy wallet: no decoding of its terminals per request), else
        decoded. The bytes decide, so a state another worker changed meanwhile (a partition
        that moved and came back), or a commit that was aborted, is never served stale."""
        stored = store.get_bytes(CUSTOMER, key)
        if stored is None:
            return None
        cached = self.customers.get(key)
        if cached is not None and (cached[0] is stored or cached[0] == stored):
            self.customers.move_to_end(key)
            return cached[1]
        return decode_customer(stored)

    def keep_customer(self, store: Store, key: bytes, customer: CustomerState) -> None:
        encoded = encode_customer(customer)
        store.set_bytes(CUSTOMER, encoded, key)
        self.customers[key] = (encoded, customer)
        self.customers.move_to_end(key)
        if len(self.customers) > CUSTOMERS_CACHED_MAX:
            self.customers.popitem(last=False)

    # ---- ledger outcomes and credits --------------------------------------------------

    def on_outcome(
        self,
        store: Store,
        key: bytes,
        event: TransactionPosted | TransactionFailed | DuplicateDiscarded,
        now_ms: int,
    ) -> None:
        source = event.source_wallet_id
        _wallet_key(key, source or event.destination_wallet_id)
        transaction_id = str(event.transaction_id)
        stored = store.get_bytes(decided_key(transaction_id), key)
        if stored is None:  # it holds nothing here: a record that does not belong
            raise RecordRefused(
                f"{event.kind} for transaction {transaction_id}, which this wallet's partition "
                "has no decision of (never decided here, or forgotten after the retention)"
            )
        decided = Decided.decode(stored)
        status = decided.status
        if isinstance(event, TransactionPosted):
            if status is Status.SETTLED:
                return  # a repeat from the ledger's outbox
            if status is not Status.SENT:
                raise WalletInvariantError(
                    f"the ledger posted transaction {transaction_id} of wallet "
                    f"{key.decode()}, which the stream holds as {status}"
                    + (" (released at its deadline)" if status is Status.EXPIRED else "")
                )
            wallet = WalletValue.decode(store.get_bytes(WALLET, key))
            if decided.held > 0:
                spent = event.moved_amount + event.fee_amount  # a partial capture spent less
                wallet.state.settle(decided.held, spent)
            if source is None:  # a deposit is keyed by its destination: credit it here
                wallet.state.credit(event.moved_amount)
            decided.status = Status.SETTLED
        else:
            if status in (Status.FAILED, Status.EXPIRED, Status.REJECTED, Status.SETTLED):
                if status is Status.SETTLED and isinstance(event, TransactionFailed):
                    raise WalletInvariantError(
                        f"the ledger failed transaction {transaction_id} of wallet "
                        f"{key.decode()} after posting it"
                    )
                return  # a repeat; or the ledger's failure of a command it got too late
            if status is not Status.SENT:
                raise WalletInvariantError(
                    f"{event.kind} for transaction {transaction_id} of wallet {key.decode()}, "
                    f"which the stream holds as {status}: no command was sent"
                )
            wallet = WalletValue.decode(store.get_bytes(WALLET, key))
            if decided.held > 0:
                wallet.state.release(decided.held)
            wallet.usage.give_back(decided.charge)
            decided.status = Status.FAILED
        decided.held, decided.charge, decided.deadline_ms = decided.held * 0, None, 0
        store.set_bytes(WALLET, wallet.encode(), key)
        store.set_bytes(decided_key(transaction_id), decided.encode(), key)
        self.forget_later(store, key, transaction_id, now_ms)

    def on_credit(self, store: Store, key: bytes, credit: WalletCredited, now_ms: int) -> None:
        _wallet_key(key, credit.wallet_id)
        transaction_id = str(credit.transaction_id)
        marker = credited_key(transaction_id)
        if store.get_bytes(marker, key) is not None:
            return  # a repeat from the ledger's outbox
        wallet = WalletValue.decode(store.get_bytes(WALLET, key))
        wallet.state.credit(credit.amount)
        store.set_bytes(WALLET, wallet.encode(), key)
        store.set_bytes(marker, b"1", key)
        Schedule(store).add(
            now_ms,
            now_ms + self.settings.retention_ms,
            FORGET_CREDIT,
            key.decode(),
            transaction_id,
        )

    # ---- limits, reviews, labels ------------------------------------------------------

    def on_limits(self, store: Store, key: bytes, change: WalletLimitsChanged) -> None:
        _wallet_key(key, change.wallet_id)
        wallet = WalletValue.decode(store.get_bytes(WALLET, key))
        if wallet.limits.apply(change):
            store.set_bytes(WALLET, wallet.encode(), key)

    def on_review(
        self, store: Store, key: bytes, decision: ReviewDecided, now_ms: int, out: list[Output]
    ) -> None:
        _wallet_key(key, decision.wallet_id)
        transaction_id = str(decision.transaction_id)
        stored = store.get_bytes(decided_key(transaction_id), key)
        if stored is None:
            raise RecordRefused(f"no transaction {transaction_id} was held for review here")
        decided = Decided.decode(stored)
        if decided.status is not Status.REVIEW:
            return  # decided already: the first decision won (or the deadline did)
        wallet = WalletValue.decode(store.get_bytes(WALLET, key))
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        command = decide_review(
            decision, decided, wallet.state, wallet.usage, self.settings.timeouts, now
        )
        wallet.reviews_open -= 1
        self._closed_or_sent(store, key, transaction_id, decided, now_ms)
        store.set_bytes(WALLET, wallet.encode(), key)
        store.set_bytes(decided_key(transaction_id), decided.encode(), key)
        out.append(Output(_TARGETS[type(command)], key, records.encode(command)))

    def _closed_or_sent(
        self, store: Store, key: bytes, transaction_id: str, decided: Decided, now_ms: int
    ) -> None:
        schedule = Schedule(store)
        if decided.status is Status.SENT:
            due = decided.deadline_ms + self.settings.grace_ms
            schedule.add(now_ms, due, EXPIRE, key.decode(), transaction_id)
        else:
            self.forget_later(store, key, transaction_id, now_ms)

    def on_label(
        self, store: Store, partition: int, key: bytes, label: FraudLabelled, now_ms: int
    ) -> None:
        _wallet_key(key, label.wallet_id)
        transaction_id = str(label.transaction_id)
        stored = store.get_bytes(decided_key(transaction_id), key)
        if stored is None:
            raise UnknownLabelledTransaction(
                f"transaction {transaction_id} is not held for this wallet (unknown id, keyed "
                "by another wallet, or forgotten after the retention)"
            )
        decided = Decided.decode(stored)
        if decided.labelled:
            return  # labelled already: a repeat
        features = decided.features_for(FEATURE_NAMES)
        if features is not None:  # scored by this engine's features: learn from them
            self.learning.learn(features, label.is_fraud)
            if self.learning.labels % LABELS_LOG_EVERY == 0:
                log.info("label learning: %s", self.learning.summary())
        decided.labelled = True
        store.set_bytes(decided_key(transaction_id), decided.encode(), key)
        if label.is_fraud and decided.terminal is not None and decided.time_s is not None:
            TerminalPending(store).add(decided.terminal, decided.time_s, True)
            self.pending_since.setdefault(partition, now_ms)


__all__ = ["Flow", "FlowSettings", "Output"]

"""What happens to a wallet partition as time passes: its clock tick's handlers.

``ClockTicked`` reaches every partition each ``STREAMS_TICK_INTERVAL_MS``: the partition
reads the clock buckets that ended (``streams.store.Schedule``), releases holds past their
deadline and grace (docs/topics.md, "Holds expire"), forgets decided transactions and
applied credits past their retention, sends its pending terminal counts, and lets the
model and policy watchers look for changes. A mixin of ``streams.flow.Flow``, whose
settings, watchers and state it uses.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from domain import records
from domain.records import TransactionRequested
from domain.topics import TERMINAL_COUNTS, TRANSACTIONS_REJECTED
from streams.decided import OPEN, Decided, Status
from streams.outputs import Output
from streams.screening import decline_held
from streams.store import (
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
from streams.terminals import batch_counts

log = logging.getLogger("streams")


class ClockHandlers:
    settings: Any
    models: Any
    policies: Any
    failed_rules: Any
    pending_since: dict[int, int]

    # ---- the clock ----------------------------------------------------------------------

    def on_tick(self, store: Store, partition: int, now_ms: int, out: list[Output]) -> None:
        """Release what is past its deadline, forget what is past its retention, send the
        terminal counts; and let the model and policy watchers look for changes."""
        self.models.poll()
        if self.policies.poll() or self.failed_rules:
            if self.failed_rules:
                log.warning("policy rules that failed to evaluate: %s", self.failed_rules)
                self.failed_rules.clear()
        settings = self.settings
        due = Schedule(store).due(now_ms, settings.clock_buckets_max)
        for action, wallet, transaction_id in due:
            prefix = wallet.encode()
            if action == EXPIRE:
                self.expire(store, prefix, transaction_id, now_ms, out)
            elif action == FORGET:
                stored = store.get_bytes(decided_key(transaction_id), prefix)
                if stored is not None and Decided.decode(stored).status not in OPEN:
                    store.delete(decided_key(transaction_id), prefix)
            elif action == FORGET_CREDIT:
                store.delete(credited_key(transaction_id), prefix)
        self.send_terminal_counts(store, partition, out)

    def expire(
        self, store: Store, key: bytes, transaction_id: str, now_ms: int, out: list[Output]
    ) -> None:
        """A hold whose deadline (and grace) passed without an outcome: a review is declined,
        a command's reservation released (the ledger fails a command it reads that late)."""
        stored = store.get_bytes(decided_key(transaction_id), key)
        if stored is None:
            return
        decided = Decided.decode(stored)
        if decided.status not in OPEN or decided.deadline_ms + self.settings.grace_ms > now_ms:
            return  # closed in time, or held again under a later deadline (its own entry)
        wallet = WalletValue.decode(store.get_bytes(WALLET, key))
        deadline = datetime.fromtimestamp(decided.deadline_ms / 1000, UTC).isoformat()
        if decided.status is Status.REVIEW:
            review = decided.review or {}
            request = TransactionRequested.model_validate(review["request"])
            scored = {
                "scored_by": review.get("scored_by"),
                "shadow_scores": review.get("shadow_scores") or {},
            }
            now = datetime.fromtimestamp(now_ms / 1000, UTC)
            message = f"review timed out: no decision by {deadline}"
            rejection = decline_held(
                request,
                decided,
                wallet.state,
                wallet.usage,
                message,
                review["risk_score"],
                scored,
                now,
            )
            decided.review = None
            wallet.reviews_open -= 1
            out.append(Output(TRANSACTIONS_REJECTED, key, records.encode(rejection)))
        else:
            log.warning(
                "hold of transaction %s (wallet %s) released: no ledger outcome by %s",
                transaction_id,
                key.decode(),
                deadline,
            )
            if decided.held > 0:
                wallet.state.release(decided.held)
            wallet.usage.give_back(decided.charge)
            decided.status, decided.held, decided.charge = Status.EXPIRED, decided.held * 0, None
        store.set_bytes(WALLET, wallet.encode(), key)
        store.set_bytes(decided_key(transaction_id), decided.encode(), key)
        self.forget_later(store, key, transaction_id, now_ms)

    def forget_later(self, store: Store, key: bytes, transaction_id: str, now_ms: int) -> None:
        """The transaction is closed: keep its key for the retention, then delete it."""
        due = now_ms + self.settings.retention_ms
        Schedule(store).add(now_ms, due, FORGET, key.decode(), transaction_id)

    def send_terminal_counts(self, store: Store, partition: int, out: list[Output]) -> None:
        self.pending_since.pop(partition, None)
        for counted in batch_counts(TerminalPending(store).take()):
            out.append(Output(TERMINAL_COUNTS, counted.terminal.encode(), records.encode(counted)))

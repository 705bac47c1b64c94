"""What counts as the outcome of an accepted request, and the verdict on one request.

An accepted request (a row of the API's ``transaction_requests``) ends in exactly one
outcome, recorded by the ledger writer as a *terminal event* of the transaction in
``transaction_events``:

- ``SETTLED``: the money moved (the transaction is COMPLETED, or later REVERSED: a reversal
  adds REVERSED events to the original, which are not outcomes of it; the reversal is a
  request of its own with its own outcome);
- ``FAILED``: declined or refused, with a reason. The stream's rejections reach the ledger
  on ``transactions.rejected`` and the writer records each as a FAILED transaction
  (INITIATED then FAILED, no entries), so a rejection is a FAILED outcome like a ledger
  refusal, a gateway decline or an expired hold.

With ledger shards a transaction between two shards has a terminal event on each: the
payer's shard records SETTLED (or FAILED) when it debits, the payee's shard SETTLED when the
credit lands; until then the request is in flight.

A request's verdict (``classify``): ENDED with exactly one outcome by its deadline; IN_FLIGHT
without one while the deadline has not passed; STUCK without one after it; DUPLICATED with
more than one (two terminal events, or one where the transaction does not belong); LATE
with exactly one that came after the deadline. Pure: no I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

#: Event types that end a transaction (see the module docstring).
TERMINAL_EVENTS = ("SETTLED", "FAILED")


class Verdict(StrEnum):
    ENDED = "ended"
    IN_FLIGHT = "in_flight"
    STUCK = "stuck"
    DUPLICATED = "duplicated"
    LATE = "late"


@dataclass(frozen=True)
class RequestFacts:
    """An accepted request as reconciliation needs it. ``payee_shard`` is set only when the
    payee's shard also records the outcome (a transfer between two shards)."""

    transaction_id: uuid.UUID
    accepted_at: datetime
    published: bool
    home_shard: int = 0
    payee_shard: int | None = None


@dataclass(frozen=True)
class Recorded:
    """The terminal events one shard holds for one transaction."""

    settled: int = 0
    failed: int = 0
    last_at: datetime | None = None

    @property
    def count(self) -> int:
        return self.settled + self.failed

    def describe(self) -> str:
        return f"{self.settled} SETTLED, {self.failed} FAILED"


NOTHING = Recorded()


def classify(
    request: RequestFacts,
    recorded: Mapping[int, Recorded],
    now: datetime,
    deadline: timedelta,
) -> tuple[Verdict, str]:
    """The verdict on one request and why, from the terminal events of each shard."""
    due = request.accepted_at + deadline
    home = recorded.get(request.home_shard, NOTHING)
    far = recorded.get(request.payee_shard, NOTHING) if request.payee_shard is not None else None
    stray = [
        shard
        for shard, seen in recorded.items()
        if seen.count and shard not in (request.home_shard, request.payee_shard)
    ]
    if stray:
        return Verdict.DUPLICATED, f"outcome recorded on shard(s) {stray} it does not touch"
    if home.count > 1:
        return Verdict.DUPLICATED, home.describe()
    if far is not None and (far.count > 1 or far.failed or (far.count and not home.settled)):
        return Verdict.DUPLICATED, f"payer's shard {home.describe()}; payee's {far.describe()}"
    if home.count == 0 or (far is not None and home.settled and far.count == 0):
        missing = "no outcome" if home.count == 0 else "settled, the credit not landed"
        if not request.published:
            missing += "; never published to Kafka"
        if now <= due:
            return Verdict.IN_FLIGHT, missing
        return Verdict.STUCK, f"{missing} {_age(now - request.accepted_at)} after acceptance"
    ended_at = max(t for t in (home.last_at, far.last_at if far else None) if t is not None)
    if ended_at > due:
        return Verdict.LATE, f"ended {_age(ended_at - request.accepted_at)} after acceptance"
    return Verdict.ENDED, ""


def _age(delta: timedelta) -> str:
    return f"{delta.total_seconds():.0f}s"

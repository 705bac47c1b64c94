"""Replay the stream's fraud decision over stored history, under other policies.

Pure. ClickHouse keeps each request and the stream's first decision on it (its
``risk_score``, 0-100), but not the features, so they are recomputed here with the
stream's own code (``models.features.FeatureEngine`` through ``streams.features.event_of``),
in time order, from a warm-up stretch of history before the range: customer windows look
back 30 days, so the longer the warm-up, the closer to the live values. As in the stream, a
request enters its wallet's and its terminal's history when it was approved or held for
review (as recorded).

Fraud labels, when the caller has them (stored beside the history, or a file), reach the
engine as they reach the offline ``models.features.replay``: ``label_delay_days`` after
their transaction, so the terminal fraud features (``terminal_risk_*``,
``terminal_frauds_30d``, ...) see the frauds the stream would have known of by then. The
stream learns a label when it arrives, which may be sooner or later than that delay; a
transaction without a label counts as good at its terminal, as an unlabelled one does live.

The score is the recorded one, not a new one: the live model learns online, and the score
it gave then is the one a policy would have seen.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.records import TransactionRequested
from domain.transactions import TransactionType
from models.features import SECONDS_PER_DAY, FeatureEngine
from models.policy import FraudPolicy, Verdict
from streams.decision import policy_values
from streams.features import event_of

HUNDRED = Decimal(100)
#: Recorded decisions after which the stream added a request to its wallet's history.
OBSERVED = frozenset({"approve", "review"})


@dataclass(frozen=True)
class HistoricalRequest:
    """One stored request and the stream's first decision on it (``decision`` ''
    and ``risk_score`` None when none is stored)."""

    transaction_id: uuid.UUID
    requested_at: datetime
    transaction_type: str
    source_wallet_id: uuid.UUID | None
    destination_wallet_id: uuid.UUID | None
    amount: Decimal
    currency_code: str
    channel: str
    decision: str
    risk_score: Decimal | None
    terminal_id: str = ""  # the request's metadata terminal_id, '' when unknown


@dataclass(frozen=True)
class Replayed:
    request: HistoricalRequest
    verdicts: tuple[Verdict, ...]  # one per policy, in the order given


def replay(
    history: Iterable[HistoricalRequest],
    policies: Sequence[FraudPolicy],
    start: datetime,
    label_delay_days: int = 7,
    labels: Mapping[uuid.UUID, bool] | None = None,
) -> Iterator[Replayed]:
    """``history`` in time order; requests before ``start`` only warm the features up, and
    unscored ones are not decided (the stream decided each request it scored). ``labels``
    (transaction id → is fraud) are released to the engine ``label_delay_days`` after
    their transaction, as in training."""
    engine = FeatureEngine(label_delay_days)
    names = frozenset().union(*(policy.names for policy in policies))
    labels = labels or {}
    delay_s = label_delay_days * SECONDS_PER_DAY
    #: (release time, terminal, transaction time) of frauds not yet known; time-ordered,
    #: and bounded by the history's fraudulent rows within one delay.
    known_later: deque[tuple[int, str, int]] = deque()
    for row in history:
        if (row.source_wallet_id or row.destination_wallet_id) is None:
            continue
        request = _request(row)
        event = event_of(request)
        while known_later and known_later[0][0] <= event.time_s:
            _, terminal, time_s = known_later.popleft()
            engine.apply_label(terminal, time_s, True)
        if row.requested_at >= start and row.risk_score is not None:
            x = engine.features(event)
            values = policy_values(request, x, row.risk_score, names) if names else None
            score = float(row.risk_score / HUNDRED)
            yield Replayed(row, tuple(policy.decide(score, values) for policy in policies))
        if row.decision in OBSERVED:
            engine.observe(event)
            if labels.get(row.transaction_id):
                known_later.append((event.time_s + delay_s, event.terminal, event.time_s))


def _request(row: HistoricalRequest) -> TransactionRequested:
    # What features, observe and policy_values read; no validation (stored, valid data).
    return TransactionRequested.model_construct(
        transaction_id=row.transaction_id,
        transaction_type=TransactionType(row.transaction_type),
        source_wallet_id=row.source_wallet_id,
        destination_wallet_id=row.destination_wallet_id,
        amount=row.amount,
        currency_code=row.currency_code,
        metadata={
            key: value
            for key, value in (("channel", row.channel), ("terminal_id", row.terminal_id))
            if value
        },
        requested_at=row.requested_at,
    )

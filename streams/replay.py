"""Replay the stream's fraud decision over stored history, under other policies.

Pure. ClickHouse keeps each request and the stream's first decision on it (its
``risk_score``, 0-100), but not the features, so they are recomputed here with the
stream's own code (``streams.decision.features`` and ``observe``), wallet by wallet in time
order, from a warm-up stretch of history before the range: a wallet's feature state holds
its last 50 spends, 64 request times and 64 counterparties, so a few days of warm-up give
the live values for all but the quietest wallets. As in the stream, a request enters its
wallet's history when it was approved or held for review (as recorded).

The score is the recorded one, not a new one: the live model learns online, and the score
it gave then is the one a policy would have seen.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.records import TransactionRequested
from domain.transactions import TransactionType
from models.policy import FraudPolicy, Verdict
from streams.decision import FeatureState, features, observe, policy_values

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


@dataclass(frozen=True)
class Replayed:
    request: HistoricalRequest
    verdicts: tuple[Verdict, ...]  # one per policy, in the order given


def replay(
    history: Iterable[HistoricalRequest], policies: Sequence[FraudPolicy], start: datetime
) -> Iterator[Replayed]:
    """``history`` in time order; requests before ``start`` only warm the features up, and
    unscored ones are not decided (the stream decided each request it scored)."""
    states: dict[uuid.UUID, FeatureState] = {}
    names = frozenset().union(*(policy.names for policy in policies))
    for row in history:
        wallet = row.source_wallet_id or row.destination_wallet_id
        if wallet is None:
            continue
        request = _request(row)
        state = states.setdefault(wallet, FeatureState())
        if row.requested_at >= start and row.risk_score is not None:
            x = features(request, state)
            values = policy_values(request, x, row.risk_score, names) if names else None
            score = float(row.risk_score / HUNDRED)
            yield Replayed(row, tuple(policy.decide(score, values) for policy in policies))
        if row.decision in OBSERVED:
            observe(request, state)


def _request(row: HistoricalRequest) -> TransactionRequested:
    # What features, observe and policy_values read; no validation (stored, valid data).
    return TransactionRequested.model_construct(
        transaction_id=row.transaction_id,
        transaction_type=TransactionType(row.transaction_type),
        source_wallet_id=row.source_wallet_id,
        destination_wallet_id=row.destination_wallet_id,
        amount=row.amount,
        currency_code=row.currency_code,
        metadata={"channel": row.channel} if row.channel else {},
        requested_at=row.requested_at,
    )

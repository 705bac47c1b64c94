"""What the record flow (``streams.flow``) is given and what it returns."""

from __future__ import annotations

from dataclasses import dataclass

from domain.topics import TopicSpec
from streams.limits import DefaultLimits
from streams.screening import Timeouts


@dataclass(frozen=True)
class Output:
    """A record to send: its topic (declared in ``domain.topics``), key and value."""

    topic: TopicSpec
    key: bytes
    value: bytes


@dataclass(frozen=True)
class FlowSettings:
    timeouts: Timeouts
    default_limits: DefaultLimits
    #: A hold is released this long after its deadline (clock skew, a ledger batch's time).
    grace_ms: int = 60_000
    #: How long a decided transaction (and an applied credit) is remembered after its outcome.
    retention_ms: int = 8 * 86_400_000
    #: A partition's terminal counts are sent at most this long after the first is taken.
    terminal_flush_ms: int = 500
    #: Clock buckets read per tick at most (a long-stopped clock catches up over ticks).
    clock_buckets_max: int = 3_000

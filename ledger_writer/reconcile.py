"""``walletpipe ledger reconcile``: every accepted request has exactly one outcome within its
deadline, or the offenders are named.

The accepted requests are the API's ``transaction_requests`` (the directory database); the
outcomes are the ledger's terminal events (``ledger_writer.outcomes`` says which and why),
read from every shard. Requests are read in chunks by a server-side cursor and their events
looked up per chunk, so memory stays bounded however long the history; only the counts and
the first ``SAMPLE_MAX`` offenders of each verdict are kept. Reads committed data only: it
runs beside live services (a request still inside its deadline is in flight, not a fault).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from domain.shards import ShardMap
from ledger_writer.outcomes import TERMINAL_EVENTS, Recorded, RequestFacts, Verdict, classify
from ledger_writer.rows import Row

SAMPLE_MAX = 20
CHUNK_ROWS = 5_000
#: The default deadline: the stream holds a request for an analyst's review up to
#: STREAMS_REVIEW_TIMEOUT_S (300 s) and the ledger a two-phase payment up to
#: LEDGER_HOLD_TIMEOUT_MS (30 s); 600 s covers both with room for a busy pipeline.
DEADLINE_DEFAULT_S = 600.0

_REQUESTS_SQL = """SELECT transaction_id, created_at, published_at IS NOT NULL,
                          record->>'source_wallet_id', record->>'source_user_id',
                          record->>'destination_user_id'
                     FROM transaction_requests
                    WHERE created_at >= %s AND created_at < %s"""
_TERMINAL_SQL = """SELECT transaction_id,
                          count(*) FILTER (WHERE event_type = 'SETTLED'),
                          count(*) FILTER (WHERE event_type = 'FAILED'),
                          max(created_at)
                     FROM transaction_events
                    WHERE transaction_id = ANY(%s) AND event_type = ANY(%s)
                    GROUP BY transaction_id"""


@dataclass
class Reconciliation:
    """Counts per verdict and the first offenders of each (transaction id, why)."""

    since: datetime
    until: datetime
    deadline: timedelta
    counts: dict[Verdict, int] = field(default_factory=lambda: dict.fromkeys(Verdict, 0))
    samples: dict[Verdict, list[tuple[uuid.UUID, str]]] = field(
        default_factory=lambda: {v: [] for v in Verdict}
    )

    @property
    def accepted(self) -> int:
        return sum(self.counts.values())

    @property
    def passed(self) -> bool:
        """Nothing stuck, duplicated or late (in flight is not a fault: its time is not up)."""
        return not any(self.counts[v] for v in (Verdict.STUCK, Verdict.DUPLICATED, Verdict.LATE))

    def add(self, transaction_id: uuid.UUID, verdict: Verdict, why: str) -> None:
        self.counts[verdict] += 1
        if verdict is not Verdict.ENDED and len(self.samples[verdict]) < SAMPLE_MAX:
            self.samples[verdict].append((transaction_id, why))

    def as_dict(self) -> dict[str, object]:
        return {
            "accepted": self.accepted,
            # Exactly one outcome (a late one still is one).
            "ended": self.counts[Verdict.ENDED] + self.counts[Verdict.LATE],
            **{v.value: self.counts[v] for v in Verdict if v is not Verdict.ENDED},
            "passed": self.passed,
        }


def reconcile(
    directory_url: str,
    ledger_urls: list[str] | None = None,
    *,
    deadline: timedelta = timedelta(seconds=DEADLINE_DEFAULT_S),
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> Reconciliation:
    """Reconcile the requests accepted in [since, until) (all, by default) against the
    ledger: ``ledger_urls`` are the shards' databases, shard 0 first (None: the directory
    is the ledger)."""
    urls = ledger_urls or [directory_url]
    shards = ShardMap(len(urls))
    now = now or datetime.now(UTC)
    report = Reconciliation(
        since or datetime(1970, 1, 1, tzinfo=UTC), until or now + timedelta(days=1), deadline
    )
    ledgers = [psycopg.connect(url, autocommit=True) for url in urls]
    try:
        with psycopg.connect(directory_url) as directory:
            for chunk in _requests(directory, report.since, report.until, shards):
                ids = [r.transaction_id for r in chunk]
                recorded = [_terminal_events(ledger, ids) for ledger in ledgers]
                for request in chunk:
                    seen = {
                        shard: found[request.transaction_id]
                        for shard, found in enumerate(recorded)
                        if request.transaction_id in found
                    }
                    verdict, why = classify(request, seen, now, deadline)
                    report.add(request.transaction_id, verdict, why)
    finally:
        for ledger in ledgers:
            ledger.close()
    return report


def _requests(
    conn: psycopg.Connection, since: datetime, until: datetime, shards: ShardMap
) -> Iterator[list[RequestFacts]]:
    with conn.cursor(name="reconcile_requests") as cur:
        cur.itersize = CHUNK_ROWS
        cur.execute(_REQUESTS_SQL, (since, until))
        chunk: list[RequestFacts] = []
        for row in cur:
            chunk.append(_facts(row, shards))
            if len(chunk) >= CHUNK_ROWS:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _facts(row: Row, shards: ShardMap) -> RequestFacts:
    transaction_id, accepted_at, published, source_wallet, source_user, payee_user = row
    if not shards.sharded:
        return RequestFacts(transaction_id, accepted_at, published)
    payer = source_user if source_wallet is not None else payee_user
    home = shards.shard_of_user(uuid.UUID(payer)) if payer else 0
    far = shards.shard_of_user(uuid.UUID(payee_user)) if payee_user else home
    return RequestFacts(transaction_id, accepted_at, published, home, far if far != home else None)


def _terminal_events(conn: psycopg.Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, Recorded]:
    rows = conn.execute(_TERMINAL_SQL, (ids, list(TERMINAL_EVENTS))).fetchall()
    return {t: Recorded(settled, failed, last_at) for t, settled, failed, last_at in rows}


def format_report(report: Reconciliation) -> list[str]:
    """Lines for the terminal: the counts, then each offender named with the reason."""
    lines = [
        f"{report.accepted} accepted request(s) reconciled (deadline "
        f"{report.deadline.total_seconds():.0f}s)",
        *(f"  {v.value:<11} {report.counts[v]}" for v in Verdict),
    ]
    for verdict in (Verdict.STUCK, Verdict.DUPLICATED, Verdict.LATE, Verdict.IN_FLIGHT):
        shown = report.samples[verdict]
        if not shown:
            continue
        more = report.counts[verdict] - len(shown)
        lines.append(
            f"  {verdict.value}:" + (f" (first {len(shown)}, {more} more)" if more else "")
        )
        lines.extend(f"       {transaction_id}  {why}" for transaction_id, why in shown)
    mark = "ok  " if report.passed else "FAIL"
    lines.append(f"{mark} every accepted request has exactly one outcome within its deadline")
    return lines

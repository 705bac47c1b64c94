"""What the chaos bench proves once the pipeline is quiet again.

* every request accepted since the run began has exactly one outcome
  (``ledger_writer.reconcile``: none stuck or duplicated; late ones, ended after the
  deadline, are reported), waiting first until none is in flight any more (each either
  ended or past its deadline);
* every request the client was answered 202 for is among the accepted requests (the API
  never acknowledged what it did not record);
* ``ledger verify`` passes (its checks include: all accounts sum to zero per currency,
  money is conserved; no customer balance is negative), and both of those are printed by
  name as well.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from ledger_writer.outcomes import Verdict
from ledger_writer.reconcile import Reconciliation, format_report, reconcile
from ledger_writer.verify import verify

CONSERVED = "all accounts together sum to zero per currency"
NOT_NEGATIVE = "no customer balance is negative"
POLL_S = 3.0


@dataclass
class Verdicts:
    reconciliation: Reconciliation
    verify_failed: list[str] = field(default_factory=list)
    client_missing: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def verify_ok(self) -> bool:
        return not self.verify_failed

    @property
    def passed(self) -> bool:
        """Nothing lost or doubled, the books balance. A late outcome (after the deadline,
        which a saturated machine can push past) is reported, not failed: it did arrive."""
        counts = self.reconciliation.counts
        lost_or_doubled = counts[Verdict.STUCK] + counts[Verdict.DUPLICATED]
        return self.verify_ok and not lost_or_doubled and not self.client_missing


def settle(
    database_url: str, since: datetime, deadline: timedelta, say: Callable[[str], None]
) -> Reconciliation:
    """Reconcile until nothing is in flight (bounded: by then every request is past its
    deadline, ended or stuck)."""
    give_up = time.monotonic() + deadline.total_seconds() + 30
    while True:
        report = reconcile(database_url, deadline=deadline, since=since)
        in_flight = report.counts[Verdict.IN_FLIGHT]
        if not in_flight or time.monotonic() > give_up:
            return report
        say(f"waiting for {in_flight} request(s) in flight ...")
        time.sleep(POLL_S)


def check(
    database_url: str,
    since: datetime,
    deadline: timedelta,
    client_accepted: list[str],
    say: Callable[[str], None],
) -> Verdicts:
    report = settle(database_url, since, deadline, say)
    verdicts = Verdicts(report)
    verdicts.lines.extend(format_report(report))
    verdicts.client_missing = _missing(database_url, client_accepted)
    mark = "ok  " if not verdicts.client_missing else "FAIL"
    verdicts.lines.append(
        f"{mark} every request answered 202 is an accepted request "
        f"({verdicts.client_missing} of {len(client_accepted)} missing)"
    )
    for result in verify(database_url):
        if not result.passed:
            verdicts.verify_failed.append(result.name)
        if result.name in (CONSERVED, NOT_NEGATIVE) or not result.passed:
            verdicts.lines.append(f"{'ok  ' if result.passed else 'FAIL'} ledger: {result.name}")
            verdicts.lines.extend(f"       {offender}" for offender in result.offenders)
    mark = "ok  " if verdicts.verify_ok else "FAIL"
    verdicts.lines.append(f"{mark} ledger verify: {len(verdicts.verify_failed)} check(s) failed")
    return verdicts


def _missing(database_url: str, transaction_ids: list[str]) -> int:
    if not transaction_ids:
        return 0
    ids = [uuid.UUID(t) for t in transaction_ids]
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT count(*) FROM transaction_requests WHERE transaction_id = ANY(%s)", (ids,)
        ).fetchone()
    return len(ids) - (found[0] if found else 0)

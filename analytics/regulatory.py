"""Regulatory detection: currency transaction reports and suspicious activity candidates.

Pure functions over posted movements and scored decisions; the caller loads them from
ClickHouse (``regulatory_source``). Each report carries its evidence (transaction ids,
amounts, times) and an id derived from what triggered it, so detecting again, after a
restart or for an export, gives the same id and the same record.

Rules (amounts in the transaction's currency; never converted):
- CURRENCY_TRANSACTION: a user's cash-like deposits (cash in) or withdrawals (cash out)
  summed per business day and currency, above ``ctr_threshold``.
- STRUCTURING_24H / STRUCTURING_7D: at least N deposits of a user, each between the
  structuring bounds, within 24 hours / 7 days.
- RAPID_IN_OUT: money into a wallet (deposits, incoming transfers) of at least
  ``in_out_amount_min`` leaves it again (withdrawals, payments, outgoing transfers) to at
  least ``in_out_ratio_min`` of it within ``in_out_window_hours``.
- HIGH_RISK_SCORE: a decision whose risk score is at least ``high_risk_score``.

A windowed rule fires at the transaction that makes its window match, unless a match
already happened within the window before it: one report per episode, and whether a
transaction fires depends only on the two windows before it (so detection over any history
that covers them gives the same answer).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from domain.money import wire

REPORT_NAMESPACE = uuid.UUID("5b0e7f8e-2a51-4c3e-9a43-6f1d2c0b7a19")
RECORD_KIND = "RegulatoryReport"
RECORD_SCHEMA_VERSION = 1
HOUR = timedelta(hours=1)
INFLOW_TYPES = ("DEPOSIT", "TRANSFER")
OUTFLOW_TYPES = ("WITHDRAWAL", "TRANSFER", "PAYMENT")


class ReportType(StrEnum):
    CURRENCY_TRANSACTION = "CURRENCY_TRANSACTION"
    STRUCTURING_24H = "STRUCTURING_24H"
    STRUCTURING_7D = "STRUCTURING_7D"
    RAPID_IN_OUT = "RAPID_IN_OUT"
    HIGH_RISK_SCORE = "HIGH_RISK_SCORE"

    @property
    def category(self) -> str:
        """CTR: currency transaction report; SAR: suspicious activity (a candidate)."""
        return "CTR" if self is ReportType.CURRENCY_TRANSACTION else "SAR"


@dataclass(frozen=True)
class Movement:
    """A transaction as the detectors see it: posted money, or a scored decision."""

    transaction_id: uuid.UUID
    transaction_type: str
    at: datetime
    amount: Decimal
    currency_code: str
    source_user_id: uuid.UUID | None = None
    destination_user_id: uuid.UUID | None = None
    source_wallet_id: uuid.UUID | None = None
    destination_wallet_id: uuid.UUID | None = None
    risk_score: Decimal | None = None
    decision: str = ""

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.at, str(self.transaction_id))


@dataclass(frozen=True)
class Rules:
    ctr_threshold: Decimal = Decimal("10000")
    structuring_amount_min: Decimal = Decimal("8000")
    structuring_amount_max: Decimal = Decimal("10000")
    structuring_count_24h_min: int = 3
    structuring_count_7d_min: int = 5
    in_out_window: timedelta = timedelta(hours=24)
    in_out_amount_min: Decimal = Decimal("3000")
    in_out_ratio_min: Decimal = Decimal("0.9")
    high_risk_score: Decimal = Decimal("90")  # risk scores are 0-100
    business_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    @property
    def context(self) -> timedelta:
        """History a trigger depends on: two of the longest window."""
        return 2 * max(timedelta(days=7), self.in_out_window)


@dataclass(frozen=True)
class Report:
    report_id: uuid.UUID
    report_type: ReportType
    occurred_at: datetime
    currency_code: str
    total_amount: Decimal
    reason: str
    evidence: tuple[Movement, ...]
    subject_user_id: uuid.UUID | None = None
    subject_wallet_id: uuid.UUID | None = None
    business_day: date | None = None
    details: tuple[tuple[str, str], ...] = ()

    @property
    def sort_key(self) -> tuple[datetime, str, str]:
        return (self.occurred_at, self.report_type.value, str(self.report_id))

    def to_record(self) -> dict[str, Any]:
        """The JSON record on ``regulatory.reports`` and in exports: deterministic."""
        return {
            "kind": RECORD_KIND,
            "schema_version": RECORD_SCHEMA_VERSION,
            "report_id": str(self.report_id),
            "report_type": self.report_type.value,
            "category": self.report_type.category,
            "occurred_at": iso(self.occurred_at),
            "business_day": self.business_day.isoformat() if self.business_day else None,
            "subject_user_id": _text(self.subject_user_id),
            "subject_wallet_id": _text(self.subject_wallet_id),
            "currency_code": self.currency_code,
            "total_amount": wire(self.total_amount),
            "transaction_count": len(self.evidence),
            "reason": self.reason,
            "details": dict(self.details),
            "evidence": [evidence_record(m, self.subject_wallet_id) for m in self.evidence],
        }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def evidence_record(m: Movement, wallet: uuid.UUID | None = None) -> dict[str, Any]:
    direction = "in" if m.transaction_type == "DEPOSIT" else "out"
    if wallet is not None:
        direction = "in" if m.destination_wallet_id == wallet else "out"
    return {
        "transaction_id": str(m.transaction_id),
        "transaction_type": m.transaction_type,
        "at": iso(m.at),
        "amount": wire(m.amount),
        "currency_code": m.currency_code,
        "direction": direction,
        "risk_score": None if m.risk_score is None else str(m.risk_score),
        "decision": m.decision or None,
    }


def report_id(report_type: ReportType, *parts: object) -> uuid.UUID:
    return uuid.uuid5(REPORT_NAMESPACE, ":".join([report_type.value, *map(str, parts)]))


def business_day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def currency_transactions(moves: Iterable[Movement], rules: Rules) -> list[Report]:
    groups: dict[tuple[uuid.UUID, date, str, str], list[Movement]] = defaultdict(list)
    for m in moves:
        if m.transaction_type == "DEPOSIT" and m.destination_user_id is not None:
            user, direction = m.destination_user_id, "cash_in"
        elif m.transaction_type == "WITHDRAWAL" and m.source_user_id is not None:
            user, direction = m.source_user_id, "cash_out"
        else:
            continue
        day = m.at.astimezone(rules.business_zone).date()
        groups[(user, day, m.currency_code, direction)].append(m)
    reports = []
    for (user, day, currency, direction), group in groups.items():
        total = sum((m.amount for m in group), Decimal(0))
        if total <= rules.ctr_threshold:
            continue
        reports.append(
            Report(
                report_id=report_id(
                    ReportType.CURRENCY_TRANSACTION, user, currency, direction, day
                ),
                report_type=ReportType.CURRENCY_TRANSACTION,
                occurred_at=business_day_start(day, rules.business_zone),
                currency_code=currency,
                total_amount=total,
                reason=f"{direction} of {wire(total)} {currency} on {day} is above "
                f"{wire(rules.ctr_threshold)}",
                evidence=tuple(sorted(group, key=lambda m: m.key)),
                subject_user_id=user,
                business_day=day,
                details=(("direction", direction), ("threshold", wire(rules.ctr_threshold))),
            )
        )
    return reports


def structuring(moves: Iterable[Movement], rules: Rules, report_type: ReportType) -> list[Report]:
    window, count_min = (
        (timedelta(hours=24), rules.structuring_count_24h_min)
        if report_type is ReportType.STRUCTURING_24H
        else (timedelta(days=7), rules.structuring_count_7d_min)
    )
    low, high = rules.structuring_amount_min, rules.structuring_amount_max
    by_user: dict[tuple[uuid.UUID, str], list[Movement]] = defaultdict(list)
    for m in moves:
        if m.transaction_type == "DEPOSIT" and m.destination_user_id and low <= m.amount <= high:
            by_user[(m.destination_user_id, m.currency_code)].append(m)
    reports = []
    for (user, currency), deposits in by_user.items():
        deposits.sort(key=lambda m: m.key)
        last_match: datetime | None = None
        left = 0
        for right, deposit in enumerate(deposits):
            while deposits[left].at <= deposit.at - window:
                left += 1
            in_window = deposits[left : right + 1]
            if len(in_window) < count_min:
                continue
            episode_open = last_match is not None and last_match > deposit.at - window
            last_match = deposit.at
            if episode_open:
                continue
            total = sum((m.amount for m in in_window), Decimal(0))
            reports.append(
                Report(
                    report_id=report_id(report_type, user, currency, deposit.transaction_id),
                    report_type=report_type,
                    occurred_at=deposit.at,
                    currency_code=currency,
                    total_amount=total,
                    reason=f"{len(in_window)} deposits between {wire(low)} and {wire(high)} "
                    f"{currency} within {_span(window)}",
                    evidence=tuple(in_window),
                    subject_user_id=user,
                    details=(("window", _span(window)), ("count_min", str(count_min))),
                )
            )
    return reports


def rapid_in_out(moves: Iterable[Movement], rules: Rules) -> list[Report]:
    flows: dict[uuid.UUID, list[Movement]] = defaultdict(list)
    for m in moves:
        if m.transaction_type in INFLOW_TYPES and m.destination_wallet_id:
            flows[m.destination_wallet_id].append(m)
        if m.transaction_type in OUTFLOW_TYPES and m.source_wallet_id:
            flows[m.source_wallet_id].append(m)
    reports = []
    window = rules.in_out_window
    for wallet, wallet_flows in flows.items():
        wallet_flows.sort(key=lambda m: m.key)
        last_match: datetime | None = None
        left = 0
        for index, out in enumerate(wallet_flows):
            if out.source_wallet_id != wallet:
                continue
            while wallet_flows[left].at <= out.at - window:
                left += 1
            recent = wallet_flows[left : index + 1]
            inflows = [m for m in recent if m.destination_wallet_id == wallet]
            if not inflows:
                continue
            started = inflows[0].at
            outflows = [m for m in recent if m.source_wallet_id == wallet and m.at >= started]
            in_sum = sum((m.amount for m in inflows), Decimal(0))
            out_sum = sum((m.amount for m in outflows), Decimal(0))
            if in_sum < rules.in_out_amount_min or out_sum < rules.in_out_ratio_min * in_sum:
                continue
            episode_open = last_match is not None and last_match > out.at - window
            last_match = out.at
            if episode_open:
                continue
            reports.append(
                Report(
                    report_id=report_id(ReportType.RAPID_IN_OUT, wallet, out.transaction_id),
                    report_type=ReportType.RAPID_IN_OUT,
                    occurred_at=out.at,
                    currency_code=out.currency_code,
                    total_amount=out_sum,
                    reason=f"{wire(in_sum)} in and {wire(out_sum)} {out.currency_code} out "
                    f"within {_span(window)}",
                    evidence=tuple(m for m in recent if m.at >= started),
                    subject_user_id=out.source_user_id,
                    subject_wallet_id=wallet,
                    details=(("in_amount", wire(in_sum)), ("out_amount", wire(out_sum))),
                )
            )
    return reports


def high_risk_scores(decisions: Iterable[Movement], rules: Rules) -> list[Report]:
    worst: dict[uuid.UUID, Movement] = {}
    for m in decisions:
        if m.risk_score is None or m.risk_score < rules.high_risk_score:
            continue
        kept = worst.get(m.transaction_id)
        if kept is None or (m.risk_score, kept.key) > (kept.risk_score, m.key):
            worst[m.transaction_id] = m
    return [
        Report(
            report_id=report_id(ReportType.HIGH_RISK_SCORE, m.transaction_id),
            report_type=ReportType.HIGH_RISK_SCORE,
            occurred_at=m.at,
            currency_code=m.currency_code,
            total_amount=m.amount,
            reason=f"risk score {m.risk_score} is at least {rules.high_risk_score}",
            evidence=(m,),
            subject_user_id=m.source_user_id or m.destination_user_id,
            subject_wallet_id=m.source_wallet_id or m.destination_wallet_id,
            details=(("risk_score", str(m.risk_score)), ("decision", m.decision)),
        )
        for m in worst.values()
    ]


def detect(
    moves: Sequence[Movement],
    decisions: Sequence[Movement],
    rules: Rules,
    start: datetime,
    end: datetime,
    *,
    closed_before: datetime | None = None,
) -> list[Report]:
    """Every report that occurred in [start, end), in a stable order.

    ``moves`` must cover [start - rules.context, end). A currency transaction report occurs
    at its business day's start; with ``closed_before``, only days over by then count."""
    reports = [
        *currency_transactions(moves, rules),
        *structuring(moves, rules, ReportType.STRUCTURING_24H),
        *structuring(moves, rules, ReportType.STRUCTURING_7D),
        *rapid_in_out(moves, rules),
        *high_risk_scores(decisions, rules),
    ]
    kept = [r for r in reports if start <= r.occurred_at < end]
    if closed_before is not None:
        kept = [r for r in kept if _closed(r.business_day, rules, closed_before)]
    return sorted(kept, key=lambda r: r.sort_key)


def _closed(day: date | None, rules: Rules, closed_before: datetime) -> bool:
    if day is None:
        return True
    return business_day_start(day + timedelta(days=1), rules.business_zone) <= closed_before


def _span(window: timedelta) -> str:
    hours = int(window / HOUR)
    return f"{hours // 24}d" if hours % 24 == 0 and hours >= 48 else f"{hours}h"

"""What a policy would have done to past transactions: rates, fraud caught, good customers
hurt, money saved. Pure: decisions and labels in, figures and text out.

``fraud caught`` counts labelled frauds the policy declined (and, apart, those it sent to
review); ``good customers hurt`` counts transactions labelled good that it reviewed or
declined; ``money saved`` is the amount of the frauds it declined, per currency (amounts
are never converted). Transactions without a label count in the rates only.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from models.exceptions import DatasetError
from models.policy import Action, Verdict

LABELS_ROWS_MAX = 5_000_000
LABEL_VALUES = {"1": True, "true": True, "fraud": True, "0": False, "false": False, "good": False}


@dataclass
class Tally:
    decided: int = 0
    actions: Counter[Action] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)  # decisions per deciding rule
    failed_rules: Counter[str] = field(default_factory=Counter)
    fraud: Counter[Action] = field(default_factory=Counter)  # labelled fraud, by action
    good: Counter[Action] = field(default_factory=Counter)  # labelled good, by action
    #: (currency, action) -> amount of labelled fraud
    fraud_amount: dict[tuple[str, Action], Decimal] = field(default_factory=dict)

    def add(self, verdict: Verdict, amount: Decimal, currency: str, label: bool | None) -> None:
        self.decided += 1
        self.actions[verdict.action] += 1
        if verdict.rule is not None:
            self.rules[verdict.rule] += 1
        self.failed_rules.update(verdict.failed_rules)
        if label is None:
            return
        if not label:
            self.good[verdict.action] += 1
            return
        self.fraud[verdict.action] += 1
        key = (currency, verdict.action)
        self.fraud_amount[key] = self.fraud_amount.get(key, Decimal(0)) + amount

    @property
    def labelled(self) -> int:
        return sum(self.fraud.values()) + sum(self.good.values())

    def rate(self, action: Action) -> float:
        return self.actions[action] / self.decided if self.decided else 0.0

    def saved(self) -> dict[str, Decimal]:
        """Fraud amount declined, per currency."""
        return {c: a for (c, act), a in sorted(self.fraud_amount.items()) if act is Action.DECLINE}

    def as_dict(self) -> dict[str, object]:
        return {
            "decided": self.decided,
            **{f"{a.value}_rate": round(self.rate(a), 6) for a in Action},
            **{a.value: self.actions[a] for a in Action},
            "labelled": self.labelled,
            "fraud": sum(self.fraud.values()),
            "fraud_declined": self.fraud[Action.DECLINE],
            "fraud_reviewed": self.fraud[Action.REVIEW],
            "fraud_approved": self.fraud[Action.APPROVE],
            "good_hurt": self.good[Action.REVIEW] + self.good[Action.DECLINE],
            "good_reviewed": self.good[Action.REVIEW],
            "good_declined": self.good[Action.DECLINE],
            "money_saved": {c: str(a) for c, a in self.saved().items()},
            "rules": dict(self.rules.most_common()),
            "failed_rules": dict(self.failed_rules.most_common()),
        }


def parse_labels(text: str, source: str = "labels") -> dict[uuid.UUID, bool]:
    """A CSV with a header ``transaction_id,label``; a label is 1/0, true/false or
    fraud/good. A later line for the same id wins (a corrected label)."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if "transaction_id" not in header or "label" not in header:
        raise DatasetError(f"{source}: the header must name transaction_id and label, got {header}")
    id_at, label_at = header.index("transaction_id"), header.index("label")
    labels: dict[uuid.UUID, bool] = {}
    for line, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(labels) >= LABELS_ROWS_MAX:
            raise DatasetError(f"{source}: more than {LABELS_ROWS_MAX} labels")
        if len(row) != len(header):
            raise DatasetError(f"{source} line {line}: {len(row)} fields, expected {len(header)}")
        try:
            transaction_id = uuid.UUID(row[id_at].strip())
        except ValueError:
            raise DatasetError(
                f"{source} line {line}: transaction_id {row[id_at]!r} is not a UUID"
            ) from None
        value = LABEL_VALUES.get(row[label_at].strip().lower())
        if value is None:
            raise DatasetError(
                f"{source} line {line}: label {row[label_at]!r} is not 1/0, true/false or "
                "fraud/good"
            )
        labels[transaction_id] = value
    return labels


def tally(
    decided: Iterable[tuple[uuid.UUID, Decimal, str, Verdict]],
    labels: Mapping[uuid.UUID, bool],
) -> Tally:
    result = Tally()
    for transaction_id, amount, currency, verdict in decided:
        result.add(verdict, amount, currency, labels.get(transaction_id))
    return result


def _money(amounts: Mapping[str, Decimal]) -> str:
    return ", ".join(f"{a} {c}" for c, a in sorted(amounts.items())) or "0"


def _delta_money(candidate: Mapping[str, Decimal], baseline: Mapping[str, Decimal]) -> str:
    currencies = sorted(set(candidate) | set(baseline))
    parts = [f"{candidate.get(c, 0) - baseline.get(c, 0):+} {c}" for c in currencies]
    return ", ".join(parts) or "0"


def format_comparison(candidate: Tally, baseline: Tally, names: tuple[str, str]) -> str:
    """A table: the candidate beside the baseline (the policy in force) and the change."""
    rows: list[tuple[str, str, str, str]] = [("", names[0], names[1], "change")]

    def count_row(label: str, a: int, b: int) -> None:
        rows.append((label, f"{a:,}", f"{b:,}", f"{a - b:+,}"))

    count_row("decided", candidate.decided, baseline.decided)
    for action in Action:
        a, b = candidate.rate(action), baseline.rate(action)
        rows.append(
            (
                f"{action.value} rate",
                f"{a:.2%} ({candidate.actions[action]:,})",
                f"{b:.2%} ({baseline.actions[action]:,})",
                f"{(a - b) * 100:+.2f} pp",
            )
        )
    if candidate.labelled:
        count_row("labelled fraud", sum(candidate.fraud.values()), sum(baseline.fraud.values()))
        count_row(
            "fraud caught (declined)",
            candidate.fraud[Action.DECLINE],
            baseline.fraud[Action.DECLINE],
        )
        count_row(
            "fraud sent to review", candidate.fraud[Action.REVIEW], baseline.fraud[Action.REVIEW]
        )
        count_row("fraud approved", candidate.fraud[Action.APPROVE], baseline.fraud[Action.APPROVE])
        count_row("labelled good", sum(candidate.good.values()), sum(baseline.good.values()))
        count_row(
            "good customers hurt",
            candidate.good[Action.REVIEW] + candidate.good[Action.DECLINE],
            baseline.good[Action.REVIEW] + baseline.good[Action.DECLINE],
        )
        count_row(
            "  of them declined", candidate.good[Action.DECLINE], baseline.good[Action.DECLINE]
        )
        rows.append(
            (
                "money saved (fraud declined)",
                _money(candidate.saved()),
                _money(baseline.saved()),
                _delta_money(candidate.saved(), baseline.saved()),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    if not candidate.labelled:
        lines.append(
            "no labels for these transactions: fraud caught, good customers hurt and money "
            "saved need --labels FILE (or a fraud_labels table in ClickHouse)"
        )
    else:
        lines.append(f"{candidate.labelled:,} of {candidate.decided:,} decisions labelled")
    if candidate.rules:
        lines.append("rules of " + names[0] + " (decisions each decided):")
        lines.extend(f"  {name}: {count:,}" for name, count in candidate.rules.most_common())
    if candidate.failed_rules:
        lines.append("rules whose arithmetic failed (did not match):")
        lines.extend(f"  {n}: {c:,}" for n, c in candidate.failed_rules.most_common())
    return "\n".join(lines)

"""What the live pipeline caught: per fraud scenario and for legitimate traffic, how many
transactions (and how much money) the stream declined, held for review or let pass, and
how well its scores ranked them (AUC and average precision over the scores it gave).

Pure: one ``LiveOutcome`` per transaction in, a JSON-ready dict out (``live_report``) and
its text (``format_live_report``). ``walletpipe simulate`` and ``demo`` fill the outcomes
from ClickHouse (the stream's first decision and score on each request) and the labels.

>>> from decimal import Decimal as D
>>> report = live_report([
...     LiveOutcome("card_testing", D("5"), "decline", 90.0),
...     LiveOutcome(None, D("20"), "approve", 10.0),
...     LiveOutcome(None, D("30"), "review", 70.0)], offline_ap=0.8)
>>> report["fraud_count_caught_share"], report["legit_review_rate"], report["live_ap"]
(1.0, 0.5, 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

LEGITIMATE = "legitimate"
#: The stream's first decision as ClickHouse stores it (``pipeline_events.decision``).
DECLINE, REVIEW = "decline", "review"


@dataclass(frozen=True)
class LiveOutcome:
    scenario: str | None  # the fraud scenario; None for a legitimate transaction
    amount: Decimal
    decision: str  # "approve", "review", "decline"; "" when none was stored
    risk_score: float | None  # 0-100, as the records carry it


def _share(part: int | Decimal, whole: int | Decimal) -> float | None:
    return float(part / whole) if whole else None


def live_report(outcomes: Iterable[LiveOutcome], offline_ap: float | None) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    scores: list[float] = []
    labels: list[int] = []
    for o in outcomes:
        name = o.scenario or LEGITIMATE
        g = groups.setdefault(
            name,
            {k: 0 for k in ("sent", "declined", "held", "passed")}
            | {
                k: Decimal(0)
                for k in ("sent_amount", "declined_amount", "held_amount", "passed_amount")
            },
        )
        kind = "declined" if o.decision == DECLINE else "held" if o.decision == REVIEW else "passed"
        g["sent"] += 1
        g[kind] += 1
        g["sent_amount"] += o.amount
        g[f"{kind}_amount"] += o.amount
        if o.risk_score is not None:
            scores.append(o.risk_score)
            labels.append(int(o.scenario is not None))
    legit = groups.get(LEGITIMATE, {"sent": 0, "declined": 0, "held": 0})
    fraud = [g for name, g in groups.items() if name != LEGITIMATE]
    fraud_sent = sum(g["sent"] for g in fraud)
    fraud_caught = sum(g["declined"] + g["held"] for g in fraud)
    fraud_amount = sum((g["sent_amount"] for g in fraud), Decimal(0))
    fraud_amount_caught = sum((g["declined_amount"] + g["held_amount"] for g in fraud), Decimal(0))
    sent = sum(g["sent"] for g in groups.values())
    live_auc, live_ap = _ranking(scores, labels)
    return {
        "transactions": sent,
        "fraud_count_caught_share": _share(fraud_caught, fraud_sent),
        "fraud_amount_caught_share": _share(fraud_amount_caught, fraud_amount),
        "review_rate": _share(sum(g["held"] for g in groups.values()), sent),
        "legit_review_rate": _share(legit["held"], legit["sent"]),
        "legit_decline_rate": _share(legit["declined"], legit["sent"]),
        "live_auc": live_auc,
        "live_ap": live_ap,
        "offline_ap": offline_ap,
        "scored": len(scores),
        "by_scenario": {
            name: {k: (str(v) if isinstance(v, Decimal) else v) for k, v in g.items()}
            for name, g in sorted(groups.items())
        },
    }


def _ranking(scores: list[float], labels: list[int]) -> tuple[float | None, float | None]:
    if len(set(labels)) < 2:
        return None, None
    from sklearn.metrics import average_precision_score, roc_auc_score

    return float(roc_auc_score(labels, scores)), float(average_precision_score(labels, scores))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_live_report(report: dict[str, Any]) -> str:
    header = (
        "",
        "sent",
        "declined",
        "held",
        "passed",
        "sent $",
        "declined $",
        "held $",
        "passed $",
    )
    rows = [header]
    for name, g in report["by_scenario"].items():
        rows.append(
            (
                name,
                *(str(g[k]) for k in ("sent", "declined", "held", "passed")),
                *(g[k] for k in ("sent_amount", "declined_amount", "held_amount", "passed_amount")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["", "live detection (the stream's first decision, from ClickHouse)"]
    lines += [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.append(
        f"fraud caught (declined or held): {_pct(report['fraud_count_caught_share'])} of "
        f"transactions, {_pct(report['fraud_amount_caught_share'])} of the amount; "
        f"review rate {_pct(report['review_rate'])}; legitimate held "
        f"{_pct(report['legit_review_rate'])}, declined {_pct(report['legit_decline_rate'])}"
    )
    lines.append(
        f"live AUC {_num(report['live_auc'])}, AP {_num(report['live_ap'])} over "
        f"{report['scored']:,} scored; the champion's offline AP {_num(report['offline_ap'])}"
    )
    return "\n".join(lines)

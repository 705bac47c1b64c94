"""Analyst reports: parameterised SQL over the roll-ups (by minute, or by hour for hour and
day buckets), shaped for JSON.

Ranges are checked before (``analytics.ranges``); amounts come back as exact decimal strings
(``toString`` of a Decimal), counts as integers, rates as floats rounded to 4 places.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from analytics.clickhouse import Warehouse
from analytics.ranges import ReportRange
from analytics.regulatory import iso
from analytics.regulatory_source import utc
from domain.money import wire

DECISIONS = ("approve", "review", "decline")
SLICE = (
    "({currency:String} = '' OR currency_code = {currency:String})"
    " AND ({transaction_type:String} = '' OR transaction_type = {transaction_type:String})"
)


def money(text: str) -> str:
    """ClickHouse prints 12.3400 as "12.34": give every amount the wire form "12.3400"."""
    return wire(Decimal(text))


def _params(rr: ReportRange, **extra: Any) -> dict[str, Any]:
    return {"start": rr.start, "end": rr.end, **extra}


def _bucket(rr: ReportRange) -> str:
    return f"toStartOfInterval({rr.grain}, {rr.granularity.sql_interval}, 'UTC')"


def _in_range(rr: ReportRange) -> str:
    """The roll-up rows of the range: minute roll-ups for minute buckets, else hourly."""
    return f"{rr.grain} >= {{start:DateTime}} AND {rr.grain} < {{end:DateTime}}"


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def header(rr: ReportRange) -> dict[str, Any]:
    return {"from": iso(rr.start), "to": iso(rr.end), "granularity": rr.granularity.value}


def volume(
    wh: Warehouse, rr: ReportRange, *, currency: str = "", transaction_type: str = ""
) -> dict[str, Any]:
    rows = wh.query(
        f"""SELECT {_bucket(rr)} AS bucket, event_kind, decision, transaction_type,
                   currency_code, transaction_status, sum(events),
                   toString(sum(amount)), toString(sum(fee_amount))
              FROM events_by_{rr.grain} WHERE {_in_range(rr)} AND {SLICE}
             GROUP BY bucket, event_kind, decision, transaction_type, currency_code,
                      transaction_status
             ORDER BY ALL""",
        _params(rr, currency=currency, transaction_type=transaction_type),
    )
    series = []
    totals: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for bucket, kind, decision, ttype, cur, status, events, amount, fee in rows:
        series.append(
            {
                "bucket": iso(utc(bucket)),
                "event_kind": kind,
                "decision": decision,
                "transaction_type": ttype,
                "currency_code": cur,
                "transaction_status": status,
                "events": events,
                "amount": money(amount),
                "fee_amount": money(fee),
            }
        )
        total = totals[(kind, ttype, cur)]
        total[0] += events
        total[1] += Decimal(amount)
    return {
        **header(rr),
        "rows": [
            {
                "event_kind": k,
                "transaction_type": t,
                "currency_code": c,
                "events": n,
                "amount": wire(a),
            }
            for (k, t, c), (n, a) in sorted(totals.items())
        ],
        "series": series,
    }


def _decision_counts(wh: Warehouse, rr: ReportRange, slice_: dict[str, str]) -> dict[str, dict]:
    rows = wh.query(
        f"""SELECT {_bucket(rr)} AS bucket, decision, sum(events)
              FROM events_by_{rr.grain} WHERE {_in_range(rr)} AND decision != '' AND {SLICE}
             GROUP BY bucket, decision ORDER BY bucket""",
        _params(rr, **slice_),
    )
    buckets: dict[str, dict[str, int]] = {}
    for bucket, decision, events in rows:
        counts = buckets.setdefault(iso(utc(bucket)), dict.fromkeys(DECISIONS, 0))
        counts[decision] = counts.get(decision, 0) + events
    return buckets


def _with_rates(counts: dict[str, int]) -> dict[str, Any]:
    decided = sum(counts.values())
    return {
        **counts,
        "decided": decided,
        **{f"{d}_rate": _rate(counts.get(d, 0), decided) for d in DECISIONS},
    }


def approval_rates(
    wh: Warehouse, rr: ReportRange, *, currency: str = "", transaction_type: str = ""
) -> dict[str, Any]:
    buckets = _decision_counts(wh, rr, {"currency": currency, "transaction_type": transaction_type})
    overall: dict[str, int] = dict.fromkeys(DECISIONS, 0)
    for counts in buckets.values():
        for decision, n in counts.items():
            overall[decision] = overall.get(decision, 0) + n
    return {
        **header(rr),
        **_with_rates(overall),
        "series": [{"bucket": b, **_with_rates(c)} for b, c in buckets.items()],
    }


_LATENCY = """sum(completed), quantilesTimingMerge(0.5, 0.9, 0.99)(latency_ms_quantiles),
              max(latency_ms_max), sum(latency_ms_sum)"""


def _latency_fields(completed: int, quantiles: list, worst: int, total: int) -> dict[str, Any]:
    if not completed:
        return {"completed": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None,
                "mean_ms": None}  # fmt: skip
    p50, p90, p99 = (int(q) for q in quantiles)
    return {"completed": completed, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
            "max_ms": worst, "mean_ms": round(total / completed, 1)}  # fmt: skip


def latency(wh: Warehouse, rr: ReportRange, *, transaction_type: str = "") -> dict[str, Any]:
    """Accept → complete: from the API's acceptance to the ledger's commit, in ms.
    One query: the buckets and the whole range (the empty grouping set)."""
    rows = wh.query(
        f"""SELECT grouping(bucket) = 1 AS whole, {_bucket(rr)} AS bucket, {_LATENCY}
              FROM latency_by_{rr.grain}
             WHERE {_in_range(rr)} AND ({{transaction_type:String}} = ''
                               OR transaction_type = {{transaction_type:String}})
             GROUP BY GROUPING SETS ((bucket), ()) ORDER BY whole, bucket""",
        _params(rr, transaction_type=transaction_type),
    )
    overall = next((rest for whole, _b, *rest in rows if whole), (0, [0, 0, 0], 0, 0))
    return {
        **header(rr),
        **_latency_fields(*overall),
        "series": [
            {"bucket": iso(utc(b)), **_latency_fields(*rest)}
            for whole, b, *rest in rows
            if not whole
        ],
    }


def fraud_rates(
    wh: Warehouse, rr: ReportRange, *, fraud_codes: tuple[str, ...], high_percent: int
) -> dict[str, Any]:
    """Per bucket: decisions declined as fraud, and decisions scored at or above the
    high-risk threshold (resolved to whole percent), each against its whole. One query
    over the three roll-ups."""
    bucket = _bucket(rr)
    rows = wh.query(
        f"""SELECT bucket, sum(decided), sum(fraud), sum(scored), sum(high) FROM (
              SELECT {bucket} AS bucket, sum(events) AS decided, toUInt64(0) AS fraud,
                     toUInt64(0) AS scored, toUInt64(0) AS high
                FROM events_by_{rr.grain} WHERE {_in_range(rr)} AND decision != '' GROUP BY bucket
              UNION ALL
              SELECT {bucket} AS bucket, 0, sum(events), 0, 0 FROM decline_reasons_by_{rr.grain}
               WHERE {_in_range(rr)} AND event_kind = 'rejected'
                 AND reason_code IN {{codes:Array(String)}}
               GROUP BY bucket
              UNION ALL
              SELECT {bucket} AS bucket, 0, 0, sum(events),
                     sumIf(events, score_percent >= {{high:UInt8}})
                FROM risk_scores_by_{rr.grain} WHERE {_in_range(rr)} GROUP BY bucket
            ) GROUP BY bucket ORDER BY bucket""",
        _params(rr, codes=list(fraud_codes), high=high_percent),
    )
    series = [_fraud_fields(iso(utc(b)), *counts) for b, *counts in rows]
    names = ("decided", "fraud_declined", "scored", "high_risk")
    totals = [sum(s[name] for s in series) for name in names]
    return {**header(rr), **_fraud_fields(None, *totals), "series": series}


def _fraud_fields(bucket: str | None, decided: int, fraud: int, scored: int, high: int) -> dict:
    fields = {
        "decided": decided,
        "fraud_declined": fraud,
        "fraud_decline_rate": _rate(fraud, decided),
        "scored": scored,
        "high_risk": high,
        "high_risk_rate": _rate(high, scored),
    }
    return fields if bucket is None else {"bucket": bucket, **fields}


def fraud_scores(wh: Warehouse, rr: ReportRange, *, bin_percent: int = 5) -> dict[str, Any]:
    """The distribution of decisions' risk scores (0-100) in bins ``bin_percent`` wide; the
    last bin takes the rest up to 100 inclusive."""
    last_bin = 100 // bin_percent - 1
    rows = wh.query(
        f"""SELECT least(intDiv(score_percent, {{width:UInt8}}), {{last:UInt8}}) AS bin,
                   decision, sum(events)
              FROM risk_scores_by_{rr.grain} WHERE {_in_range(rr)}
             GROUP BY bin, decision ORDER BY bin""",
        _params(rr, width=bin_percent, last=last_bin),
    )
    bins = [
        {
            "from": i * bin_percent,
            "to": 100 if i == last_bin else (i + 1) * bin_percent,
            "total": 0,
            **dict.fromkeys(DECISIONS, 0),
        }  # fmt: skip
        for i in range(last_bin + 1)
    ]
    for index, decision, events in rows:
        bins[index][decision] = bins[index].get(decision, 0) + events
        bins[index]["total"] += events
    return {**header(rr), "scored": sum(b["total"] for b in bins), "bins": bins}


def decline_reasons(wh: Warehouse, rr: ReportRange, *, limit: int = 10) -> dict[str, Any]:
    rows = wh.query(
        f"""SELECT reason_code, sum(events) AS n, sumIf(events, event_kind = 'rejected'),
                   sumIf(events, event_kind = 'failed')
              FROM decline_reasons_by_{rr.grain} WHERE {_in_range(rr)}
             GROUP BY reason_code ORDER BY n DESC, reason_code LIMIT {{limit:UInt32}}""",
        _params(rr, limit=limit),
    )
    return {
        **header(rr),
        "reasons": [
            {"reason_code": code, "events": n, "declined": rejected, "failed": failed}
            for code, n, rejected, failed in rows
        ],
    }


def transaction_events(wh: Warehouse, transaction_id: str) -> list[dict[str, Any]]:
    rows = wh.query(
        """SELECT event_kind, transaction_status, reason_code, toString(amount), event_time,
                  toString(round(toFloat64(risk_score), 2))
             FROM pipeline_events FINAL WHERE transaction_id = {id:UUID}
            ORDER BY event_time""",
        {"id": transaction_id},
    )
    return [
        {
            "event_kind": k,
            "transaction_status": s,
            "reason_code": r,
            "amount": money(a),
            "event_time": iso(utc(t)),
            "risk_score": score,
        }  # fmt: skip
        for k, s, r, a, t, score in rows
    ]


def dashboard(wh: Warehouse, rr: ReportRange, **fraud: Any) -> dict[str, Any]:
    """Everything the dashboard draws, in one answer (one refresh = one request)."""
    posted = wh.query(
        f"""SELECT {_bucket(rr)} AS bucket, currency_code, sum(events), toString(sum(amount))
              FROM events_by_{rr.grain} WHERE {_in_range(rr)} AND event_kind = 'posted'
             GROUP BY bucket, currency_code ORDER BY bucket, currency_code""",
        _params(rr),
    )
    return {
        **header(rr),
        "generated_at": iso(datetime.now().astimezone()),
        "decisions": approval_rates(wh, rr),
        "posted": [
            {"bucket": iso(utc(b)), "currency_code": c, "events": n, "amount": money(a)}
            for b, c, n, a in posted
        ],
        "latency": latency(wh, rr),
        "fraud_rates": fraud_rates(wh, rr, **fraud),
        "fraud_scores": fraud_scores(wh, rr),
        "decline_reasons": decline_reasons(wh, rr, limit=8),
    }


def model_scores(wh: Warehouse, rr: ReportRange, *, bin_percent: int = 10) -> dict[str, Any]:
    """Champion against challengers over the range: per model (the champion is the one that
    decided, ``scored_by`` with ``risk_score``; a challenger scored in ``shadow_scores``) how
    many decisions it scored, the mean of its scores, their median and p90 (in whole points,
    from the roll-up's histogram), the same per decision (approve / review / decline), how far
    it was from the champion on the same decisions (mean absolute difference, and the mean
    of challenger minus champion), and the distribution in bins ``bin_percent`` wide (the
    last takes the rest up to 100 inclusive). Decisions with no named model are left out."""
    last_bin = 100 // bin_percent - 1
    params = _params(rr, width=bin_percent, last=last_bin)
    summary = wh.query(
        f"""SELECT model, role, decision, sum(events) AS scored, sum(score_sum) / scored,
                   quantilesExactWeighted(0.5, 0.9)(score_percent, events),
                   sum(diff_abs_sum) / scored, sum(diff_sum) / scored
              FROM model_scores_by_{rr.grain} WHERE {_in_range(rr)}
             GROUP BY GROUPING SETS ((model, role), (model, role, decision))
             ORDER BY role = 'challenger', model, decision""",
        params,
    )
    histogram = wh.query(
        f"""SELECT model, role, least(intDiv(score_percent, {{width:UInt8}}), {{last:UInt8}}),
                   sum(events)
              FROM model_scores_by_{rr.grain} WHERE {_in_range(rr)} GROUP BY ALL""",
        params,
    )
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for model, role, decision, scored, mean, (p50, p90), gap, lead in summary:
        figures = {"scored": scored, "mean": round(mean, 2), "p50": p50, "p90": p90}
        entry = models.setdefault(
            (model, role),
            {
                "model": model,
                "role": role,
                "by_decision": {},
                "bins": [
                    {
                        "from": i * bin_percent,
                        "to": 100 if i == last_bin else (i + 1) * bin_percent,
                        "scored": 0,
                    }  # fmt: skip
                    for i in range(last_bin + 1)
                ],
            },
        )
        if decision == "":  # the (model, role) grouping set: all of its decisions
            entry.update(figures)
            if role == "challenger":
                entry["mean_abs_diff_to_champion"] = round(gap, 2)
                entry["mean_diff_to_champion"] = round(lead, 2)
        else:
            entry["by_decision"][decision] = figures
    for model, role, index, scored in histogram:
        if (model, role) in models:
            models[(model, role)]["bins"][index]["scored"] = scored
    ordered = sorted(models.values(), key=lambda m: (m["role"] != "champion", m["model"]))
    decisions = sum(m["scored"] for m in ordered if m["role"] == "champion")
    return {**header(rr), "decisions": decisions, "models": ordered}

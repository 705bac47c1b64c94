"""bench/analytics: the sink's rows/s into embedded chDB, and every dashboard query over
10 million transactions, each beside a baseline measured in the same run.

    .venv/bin/python -m bench.analytics.run [--transactions 10000000] [--sink-rows 500000]

Targets (issue 6): >= 100,000 rows/s into the embedded engine; every dashboard query
<= 100 ms. A fresh engine directory under .local/bench is used and removed afterwards
(--keep keeps it). Only one process may open a chDB path: this one opens its own.
Not a test: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from analytics import reports, schema
from analytics.clickhouse import (
    EVENT_COLUMNS,
    INSERT_SETTINGS,
    ROWS_PER_CHUNK,
    EventsBatch,
    EventsBatchBuilder,
    Warehouse,
)
from analytics.mapping import row_from_json
from analytics.ranges import report_range
from analytics.settings import AnalyticsSettings
from analytics.sink import store_new_events
from domain import records
from domain.transactions import TransactionType

REPO = Path(__file__).resolve().parents[2]
SPAN = timedelta(days=7)
CHUNK_TRANSACTIONS = 1_000_000
SINK_BATCH_ROWS = AnalyticsSettings.model_fields["batch_rows_max"].default
FRAUD = {"fraud_codes": ("FRAUD_DECLINED",), "high_percent": 90}

# One INSERT ... SELECT per chunk: 90 % approved and posted, 10 % declined, over SPAN.
GENERATE = """
INSERT INTO pipeline_events ({columns})
SELECT generateUUIDv4(tuple(n, kind)) AS event_id, kind AS event_kind,
       requested + toIntervalMillisecond(multiIf(kind = 'requested', 0, kind = 'posted',
                                                 latency_ms, 20)) AS event_time,
       tid AS transaction_id, ttype AS transaction_type,
       multiIf(kind = 'posted', 'COMPLETED', kind = 'rejected', 'FAILED', 'PENDING'),
       if(ttype = 'DEPOSIT', NULL, generateUUIDv4(tuple(n, 1))),
       if(ttype IN ('DEPOSIT', 'TRANSFER'), generateUUIDv4(tuple(n, 2)), NULL),
       if(ttype = 'DEPOSIT', NULL, generateUUIDv4(tuple(n, 3))),
       if(ttype IN ('DEPOSIT', 'TRANSFER'), generateUUIDv4(tuple(n, 4)), NULL),
       amount, toDecimal64(0, 4), amount, currency,
       if(kind = 'rejected', reason, ''), if(kind = 'requested', NULL, score),
       requested, 'pos', '', client,
       if(kind IN ('approved', 'rejected'), 'fraud-gbm v3', ''),
       if(kind IN ('approved', 'rejected'),
          map('fraud-gbm v4',
              toFloat32(least(100, score * 0.8 + (bitShiftRight(h, 44) % 2000) / 100))),
          map())
  FROM (
    SELECT number AS n, cityHash64(number) AS h, generateUUIDv4(tuple(number, 0)) AS tid,
           {{start:DateTime64(3)}} + toIntervalMillisecond(intDiv(number * {{span_ms:UInt64}},
                                                                  {{total:UInt64}})) AS requested,
           ['PAYMENT', 'PAYMENT', 'TRANSFER', 'DEPOSIT', 'WITHDRAWAL'][h % 5 + 1] AS ttype,
           bitShiftRight(h, 8) % 100 < 10 AS declined,
           ['FRAUD_DECLINED', 'INSUFFICIENT_FUNDS', 'LIMIT_EXCEEDED'][bitShiftRight(h, 16) % 3 + 1]
               AS reason,
           toFloat32(if(declined, 50 + (bitShiftRight(h, 20) % 5000) / 100,
                        100 * pow((bitShiftRight(h, 20) % 1000) / 1000, 3))) AS score,
           toDecimal64((bitShiftRight(h, 24) % 100000) / 100 + 1, 4) AS amount,
           ['USD', 'EUR', 'GBP'][bitShiftRight(h, 40) % 3 + 1] AS currency,
           50 + bitShiftRight(h, 32) % 400 AS latency_ms,
           generateUUIDv4(tuple(number % 1000, 9)) AS client,
           if(declined, ['requested', 'rejected'], ['requested', 'approved', 'posted']) AS kinds
      FROM numbers({{first:UInt64}}, {{count:UInt64}})
  ) ARRAY JOIN kinds AS kind"""

# The same answers as the dashboard's roll-up queries, computed from the raw events.
RAW = "event_time >= {start:DateTime64(3)} AND event_time < {end:DateTime64(3)}"
RAW_BUCKET = "toStartOfInterval(event_time, {interval}, 'UTC')"
BASELINES: dict[str, str] = {
    "approval rates": f"""SELECT {RAW_BUCKET} AS b, decision, count() FROM pipeline_events
        WHERE {RAW} AND decision != '' GROUP BY b, decision""",
    "posted amount": f"""SELECT {RAW_BUCKET} AS b, currency_code, count(), sum(amount)
        FROM pipeline_events WHERE {RAW} AND event_kind = 'posted' GROUP BY b, currency_code""",
    "latency p50/p90/p99": f"""SELECT {RAW_BUCKET} AS b, count(),
        quantilesTiming(0.5, 0.9, 0.99)(dateDiff('millisecond', requested_at, event_time))
        FROM pipeline_events WHERE {RAW} AND event_kind = 'posted' GROUP BY b""",
    "fraud rates": f"""SELECT {RAW_BUCKET} AS b, countIf(decision != ''),
        countIf(event_kind = 'rejected' AND reason_code = 'FRAUD_DECLINED'),
        countIf(decision != '' AND risk_score >= 90) FROM pipeline_events
        WHERE {RAW} GROUP BY b""",
    "fraud score histogram": f"""SELECT least(intDiv(toUInt32(risk_score), 5), 19) AS bin,
        decision, count() FROM pipeline_events
        WHERE {RAW} AND decision != '' AND risk_score IS NOT NULL GROUP BY bin, decision""",
    "top decline reasons": f"""SELECT reason_code, count() AS n FROM pipeline_events
        WHERE {RAW} AND reason_code != '' GROUP BY reason_code ORDER BY n DESC LIMIT 8""",
}


def timed(call: Callable[[], Any], runs: int) -> float:
    """Median wall time in ms after one warm-up call."""
    call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


class Clock:
    """Wall and CPU seconds of a stretch of work (CPU: every thread of this process, the
    engine's included, its background merges of earlier inserts too), so a figure taken on
    a busy machine can be read for what it is; and the CPU of the measuring thread alone
    (``thread``: what decoding costs, without the engine's threads running meanwhile).
    Entered again, it adds the new stretch to what it measured."""

    wall = cpu = thread = 0.0

    def __enter__(self) -> Clock:
        self._started = time.perf_counter(), time.process_time(), time.thread_time()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall += time.perf_counter() - self._started[0]
        self.cpu += time.process_time() - self._started[1]
        self.thread += time.thread_time() - self._started[2]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} CPUs"


def generate(wh: Warehouse, total: int, end: datetime) -> float:
    started = time.perf_counter()
    for first in range(0, total, CHUNK_TRANSACTIONS):
        wh.command(  # a chunk is about 3 M events: memory stays bounded
            GENERATE.format(columns=", ".join(EVENT_COLUMNS)),
            {
                "start": end - SPAN,
                "span_ms": int(SPAN.total_seconds() * 1000),
                "total": total,
                "first": first,
                "count": min(CHUNK_TRANSACTIONS, total - first),
            },
        )
    return time.perf_counter() - started


def settle(wh: Warehouse, timeout_s: float = 180.0) -> None:
    """Wait (bounded) for the background merges of the generated parts: they run in this
    process and would otherwise be counted in the sink's CPU time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and wh.query("SELECT count() FROM system.merges")[0][0]:
        time.sleep(1.0)


def sample_records(count: int, now: datetime) -> list[records.Record]:
    """What a live sink reads, in turn: a request, the stream's approval (scored by the
    champion, with one challenger's shadow score), the ledger's posting (two-phase: the
    captured amount)."""
    out: list[records.Record] = []
    for i in range(count):
        amount = Decimal(f"{10 + i % 990}.{i % 100:02d}")
        facts = {
            "transaction_id": uuid.uuid4(),
            "transaction_type": TransactionType.PAYMENT,
            "source_wallet_id": uuid.uuid4(),
            "source_user_id": uuid.uuid4(),
            "amount": amount,
            "fee_amount": Decimal(0),
            "total_amount": amount,
            "currency_code": "USD",
            "client_id": uuid.uuid4(),
            "idempotency_key": f"bench-{i}",
            "requested_at": now - timedelta(milliseconds=200),
            "metadata": {"channel": "pos", "terminal_id": f"T{i % 50}"},
        }
        at = now + timedelta(microseconds=i)
        score = Decimal(f"{i % 100}.{i % 7}0")
        if i % 3 == 0:
            out.append(records.TransactionRequested(**facts))
        elif i % 3 == 1:
            out.append(
                records.PostTransaction(
                    **facts,
                    risk_score=score,
                    decided_at=at,
                    scored_by="fraud-gbm v3",
                    shadow_scores={"fraud-gbm v4": Decimal("12.50")},
                )
            )
        else:
            out.append(
                records.TransactionPosted(
                    **facts, risk_score=score, completed_at=at, captured_amount=amount
                )
            )
    return out


def fresh_payloads(templates: list[bytes], total: int, start: datetime) -> list[bytes]:
    """``total`` record payloads cycling through ``templates``, each with an event id and a
    time of its own (each sink path gets payloads none of the others has stored)."""
    out = []
    for i in range(total):
        record = orjson.loads(templates[i % len(templates)])
        record["event_id"] = str(uuid.uuid4())
        at = (start + timedelta(microseconds=i)).isoformat().replace("+00:00", "Z")
        record[WHEN[record["kind"]]] = at
        out.append(orjson.dumps(record))
    # orjson's output buffers, shrunk to size between the dicts of the next loads, leave the
    # heap fragmented: about 8 KB held per 800-byte payload (a 500,000-row run ran out of
    # memory). Copied once into exact-size bytes, and the originals freed together.
    return b"\0".join(out).split(b"\0")  # JSON text never holds a raw NUL


_PREVIOUS_TYPES = {
    "u": pa.binary(16),
    "t": pa.timestamp("ms", tz="UTC"),
    "a": pa.decimal128(19, 4),
    "s": pa.string(),
    "f": pa.float32(),
}


class PreviousSinkPath:
    """The sink as it was before this change (main at 4dfcd4a), measured in the same run:
    records decoded by pydantic, mapped to Python objects (``uuid.UUID``, ``Decimal``,
    ``datetime``), an Arrow table built from those (UUIDs as their 16 bytes), the lookup
    reading the window's ids back as ``uuid.UUID``. It writes the columns it knew then."""

    _UUID = pa.binary(16)
    SCHEMA = pa.schema(
        [
            (name, _PREVIOUS_TYPES[k])
            for name, k in zip(EVENT_COLUMNS[:20], "ustussuuuuaaassftssu", strict=True)
        ]
    )

    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh

    @staticmethod
    def decode_and_map(topic: str, payload: bytes) -> list[Any]:
        record = (
            records.decode_review_requested(payload)
            if topic == "reviews.requested"
            else records.decode_transaction_record(payload)
        )
        kind = {"TransactionRequested": "requested", "PostTransaction": "approved",
                "TransactionPosted": "posted"}[record.kind]  # fmt: skip
        when = (
            getattr(record, "completed_at", None)
            or getattr(record, "decided_at", None)
            or record.requested_at
        )
        score = getattr(record, "risk_score", None)
        moved = getattr(record, "moved_amount", record.amount)
        total = record.total_amount if moved == record.amount else moved + record.fee_amount
        return [
            record.event_id, kind, when, record.transaction_id, record.transaction_type.value,
            {"requested": "PENDING", "approved": "PENDING", "posted": "COMPLETED"}[kind],
            record.source_wallet_id, record.destination_wallet_id, record.source_user_id,
            record.destination_user_id, moved, record.fee_amount, total, record.currency_code,
            getattr(record, "reason_code", "") or "", None if score is None else float(score),
            record.requested_at, str(record.metadata.get("channel") or ""),
            str(record.metadata.get("terminal_id") or ""), record.client_id,
        ]  # fmt: skip

    def store(self, rows: list[list[Any]]) -> int:
        seen: set[Any] = set()
        unique = []
        for row in rows:
            if row[0] not in seen:
                seen.add(row[0])
                unique.append(row)
        times = [row[2] for row in unique]
        window = {
            "kinds": sorted({row[1] for row in unique}),
            "start": min(times) - timedelta(milliseconds=2),
            "end": max(times) + timedelta(milliseconds=2),
        }
        stored = {
            row[0]
            for row in self.wh.query(
                """SELECT event_id FROM pipeline_events WHERE event_kind IN {kinds:Array(String)}
                  AND event_time >= {start:DateTime64(3)} AND event_time <= {end:DateTime64(3)}""",
                window,
            )
        }
        fresh = [row for row in unique if row[0] not in stored]
        if not fresh:
            return 0
        arrays = []
        for column, field in zip(zip(*fresh, strict=True), self.SCHEMA, strict=True):
            values: Sequence[Any] = column
            if field.type == self._UUID:
                values = [None if value is None else value.bytes for value in column]
            arrays.append(pa.array(values, type=field.type))
        table = pa.Table.from_arrays(arrays, schema=self.SCHEMA)
        self.wh._client.insert_arrow(  # noqa: SLF001 - the old path, on purpose
            "pipeline_events", table, settings=INSERT_SETTINGS
        )
        return len(fresh)


def decode(payloads: list[bytes]) -> EventsBatch:
    """A batch of record payloads to its table, as ``EventSink`` decodes one: the records
    added as they come, decoded by the native decoder a chunk at a time."""
    rows = EventsBatchBuilder()
    for payload in payloads:
        rows.add_record(TOPIC, payload)
    return rows.finish()


def decode_python(payloads: list[bytes]) -> EventsBatch:
    """The sink on main at 9feebfb: each record decoded in Python (``row_from_json``: orjson
    and the mapping), the rows converted to Arrow ``ROWS_PER_CHUNK`` at a time."""
    rows = EventsBatchBuilder(ROWS_PER_CHUNK)
    for payload in payloads:
        rows.add(row_from_json(TOPIC, payload))
    return rows.finish()


def two_threads(
    wh: Warehouse, batches: list[list[bytes]], decoder: Callable[[list[bytes]], EventsBatch]
) -> tuple[Clock, int]:
    """As ``EventSink`` runs: this thread decodes batch N+1 while a second one stores N."""
    written = 0
    with Clock() as clock, ThreadPoolExecutor(max_workers=1) as storer:
        storing: Future[int] | None = None
        for payloads in batches:
            table = decoder(payloads).table
            if storing is not None:
                written += storing.result()
            storing = storer.submit(store_new_events, wh, table)
        written += storing.result() if storing is not None else 0
    return clock, written


def batched(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


WHEN = {"TransactionRequested": "requested_at", "PostTransaction": "decided_at",
        "TransactionPosted": "completed_at"}  # fmt: skip
TOPIC = "ledger.events"  # any topic but reviews.requested reads every transaction record


def sink_figures(
    wh: Warehouse, rows_total: int, batch_rows: int
) -> list[tuple[str, int, Clock, str]]:
    now = datetime.now(UTC)
    templates = [records.encode(r) for r in sample_records(3_000, now)]

    def payloads(second: int) -> list[list[bytes]]:
        """Records of one path's own (new ids, a second of time of its own): no path sees
        another's, so each stores all of its rows."""
        return batched(
            fresh_payloads(templates, rows_total, now + timedelta(seconds=second)), batch_rows
        )

    mine, python, old = payloads(0), payloads(1), payloads(2)
    with Clock() as parse:  # what any Python decoder pays before checking a single field
        for payload in templates:
            orjson.loads(payload)

    wh.command("CREATE TABLE IF NOT EXISTS bench_plain AS pipeline_events")  # no views on it
    plain_tables = [decode(b).table for b in payloads(3)]
    with Clock() as plain:
        for table in plain_tables:
            wh._client.insert_arrow(  # noqa: SLF001 - the engine alone, on purpose
                "bench_plain", table, settings=INSERT_SETTINGS
            )
    del plain_tables
    # The paths take turns, batch by batch: on a shared machine all see the same load (and
    # the merges of each other's parts), where one after the other they would not.
    previous = PreviousSinkPath(wh)
    settle(wh, 60.0)
    clocks = {name: Clock() for name in ("decode", "store", "replay")}
    python_clocks = {name: Clock() for name in ("decode", "store", "replay")}
    old_clocks = {name: Clock() for name in ("decode", "store", "replay")}
    tables, python_tables, old_rows = [], [], []
    written = {"now": 0, "python": 0, "old": 0}
    replayed = {"now": 0, "python": 0, "old": 0}
    for batch, python_batch, old_batch in zip(mine, python, old, strict=True):
        with old_clocks["decode"]:
            rows = [previous.decode_and_map(TOPIC, p) for p in old_batch]
        with old_clocks["store"]:
            written["old"] += previous.store(rows)
        old_rows.append(rows)
        with python_clocks["decode"]:
            python_table = decode_python(python_batch).table
        with python_clocks["store"]:
            written["python"] += store_new_events(wh, python_table)
        python_tables.append(python_table)
        with clocks["decode"]:
            table = decode(batch).table
        with clocks["store"]:
            written["now"] += store_new_events(wh, table)
        tables.append(table)
    for table, python_table, rows in zip(tables, python_tables, old_rows, strict=True):
        with old_clocks["replay"]:
            replayed["old"] += previous.store(rows)
        with python_clocks["replay"]:
            replayed["python"] += store_new_events(wh, python_table)
        with clocks["replay"]:
            replayed["now"] += store_new_events(wh, table)
    if set(written.values()) != {rows_total} or set(replayed.values()) != {0}:
        raise RuntimeError(f"the paths wrote {written} of {rows_total}, then {replayed} on replay")
    del tables, python_tables, old_rows
    # As EventSink runs, each path on records of its own, the new one first and last.
    piped = [payloads(second) for second in (4, 5, 6)]
    now_first, now_first_written = two_threads(wh, piped[0], decode)
    python_piped, python_written = two_threads(wh, piped[1], decode_python)
    now_last, now_last_written = two_threads(wh, piped[2], decode)
    if {now_first_written, python_written, now_last_written} != {rows_total}:
        raise RuntimeError(
            f"the two-thread sink wrote {now_first_written}, {python_written} and "
            f"{now_last_written} of {rows_total}"
        )

    def whole(parts: dict[str, Clock]) -> Clock:
        clock = Clock()
        clock.wall = parts["decode"].wall + parts["store"].wall
        clock.cpu = parts["decode"].cpu + parts["store"].cpu
        clock.thread = parts["decode"].thread + parts["store"].thread
        return clock

    views = len(schema.ROLL_UPS)
    return [
        ("sink: JSON -> stored, decode || store (2 threads)", rows_total, now_first, ">= 100,000"),
        ("  the same, again after the 9feebfb path's run", rows_total, now_last, ">= 100,000"),
        ("sink: JSON -> stored, one thread", rows_total, whole(clocks), ""),
        ("  decode natively + Arrow, chunk by chunk", rows_total, clocks["decode"], ""),
        (f"  store: dedup lookup + Arrow insert, {views} views", rows_total, clocks["store"], ""),
        ("  the same rows replayed (all dropped)", rows_total, clocks["replay"], ""),
        ("9feebfb: JSON -> stored, 2 threads", rows_total, python_piped, ""),
        ("9feebfb: JSON -> stored, one thread", rows_total, whole(python_clocks), ""),
        ("  decode in Python + Arrow, chunk by chunk", rows_total, python_clocks["decode"], ""),
        ("  store: dedup lookup + Arrow insert", rows_total, python_clocks["store"], ""),
        ("  the same rows replayed (all dropped)", rows_total, python_clocks["replay"], ""),
        ("4dfcd4a: JSON -> stored, one thread", rows_total, whole(old_clocks), ""),
        ("  decode + map (pydantic)", rows_total, old_clocks["decode"], ""),
        ("  store: Arrow table from objects, lookup, insert", rows_total, old_clocks["store"], ""),
        ("  the same rows replayed (all dropped)", rows_total, old_clocks["replay"], ""),
        ("engine alone: Arrow insert, no lookup, no views", rows_total, plain, ""),
        ("floor: orjson.loads alone, no checks, no map", len(templates), parse, ""),
    ]


#: The lines ``sink_ratios`` compares: (label, the new path's line, the baseline's line).
RATIOS = (
    ("now / 9feebfb, whole path", "sink: JSON -> stored, one", "9feebfb: JSON -> stored, one"),
    ("now / 9feebfb, decode", "  decode natively + Arrow", "  decode in Python"),
    (
        "now / 9feebfb, 2 threads",
        "sink: JSON -> stored, decode || store",
        "9feebfb: JSON -> stored, 2",
    ),
    ("now / 4dfcd4a, whole path", "sink: JSON -> stored, one", "4dfcd4a: JSON -> stored, one"),
)


def sink_ratios(clocks: dict[str, Clock]) -> list[str]:
    """Each of ``RATIOS`` per CPU-second and per wall second (lines found by their start)."""

    def find(start: str) -> Clock:
        return next(clock for name, clock in clocks.items() if name.startswith(start))

    out = []
    for label, now, before in RATIOS:
        new, old = find(now), find(before)
        out.append(
            f"{label}: {old.cpu / new.cpu:.2f}x per CPU-second, {old.wall / new.wall:.2f}x rows/s"
        )
    return out


def query_figures(
    wh: Warehouse, end: datetime, runs: int
) -> list[tuple[str, str, float, float | None]]:
    windows = {
        "last 60 min / minute": report_range(
            end - timedelta(minutes=60), end, "minute", days_max=366, points_max=10_000
        ),
        "all 7 days / hour": report_range(end - SPAN, end, "hour", days_max=366, points_max=10_000),
    }
    calls: dict[str, Callable[[Any], Any]] = {
        "approval rates": lambda rr: reports.approval_rates(wh, rr),
        "posted amount": lambda rr: wh.query(
            f"""SELECT {reports._bucket(rr)} AS b, currency_code, sum(events), sum(amount)
                  FROM events_by_{rr.grain} WHERE {reports._in_range(rr)}
                   AND event_kind = 'posted' GROUP BY b, currency_code""",
            {"start": rr.start, "end": rr.end},
        ),
        "latency p50/p90/p99": lambda rr: reports.latency(wh, rr),
        "fraud rates": lambda rr: reports.fraud_rates(wh, rr, **FRAUD),
        "fraud score histogram": lambda rr: reports.fraud_scores(wh, rr),
        "top decline reasons": lambda rr: reports.decline_reasons(wh, rr, limit=8),
        "whole dashboard (all of the above)": lambda rr: reports.dashboard(wh, rr, **FRAUD),
        "model scores (report, not on the dashboard)": lambda rr: reports.model_scores(wh, rr),
    }
    figures = []
    for window, rr in windows.items():
        for name, call in calls.items():
            rollup_ms = timed(lambda call=call, rr=rr: call(rr), runs)
            baseline = BASELINES.get(name)
            raw_ms = None
            if baseline is not None:
                sql = baseline.replace("{interval}", rr.granularity.sql_interval)
                params = {"start": rr.start, "end": rr.end}
                raw_ms = timed(
                    lambda sql=sql, params=params: wh.query(sql, params), max(1, runs // 2)
                )
            figures.append((window, name, rollup_ms, raw_ms))
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=10_000_000)
    # Ten batches: the two-thread pipeline's fill and drain (one decode, one store alone)
    # weigh little, as they do in a sink that runs for hours.
    parser.add_argument("--sink-rows", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--sink-batch-rows", type=int, default=SINK_BATCH_ROWS, help="rows per sink insert"
    )
    parser.add_argument("--keep", action="store_true", help="keep the engine directory")
    args = parser.parse_args(argv)

    path = REPO / ".local" / "bench" / f"analytics-{os.getpid()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"bench/analytics: chDB at {path}, {args.transactions:,} transactions over 7 days")
    wh = Warehouse(f"chdb://{path}")
    try:
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        generate_s = generate(wh, args.transactions, end)
        events, roll_rows = wh.query(
            "SELECT (SELECT count() FROM pipeline_events), (SELECT count() FROM events_by_minute)"
        )[0]
        print(
            f"generated {events:,} events in {generate_s:.1f}s inside ClickHouse "
            f"({events / generate_s:,.0f} rows/s through the views); "
            f"events_by_minute holds {roll_rows:,} rows"
        )
        for roll_up in schema.ROLL_UPS:
            wh.command(f"OPTIMIZE TABLE {roll_up.name} FINAL")  # what background merges reach
        settle(wh)

        batch = args.sink_batch_rows
        print(f"\nsink into the embedded engine (batches of {batch:,} rows); {load()}")
        print(
            f"  {'path':<50} {'rows':>9} {'wall s':>7} {'rows/s':>9} {'rows/cpu-s':>11} "
            f"{'/thread-cpu-s':>13}  target"
        )
        sink = sink_figures(wh, args.sink_rows, batch)
        for name, rows, clock, note in sink:
            print(
                f"  {name:<50} {rows:>9,} {clock.wall:>7.2f} {rows / clock.wall:>9,.0f} "
                f"{rows / clock.cpu:>11,.0f} {rows / max(clock.thread, 1e-9):>13,.0f}  {note}"
            )
        print(
            "  (rows/cpu-s: every thread of the process; /thread-cpu-s: the measuring thread's "
            "own CPU, the engine's threads left out: for 2 threads, the decoding thread only)"
        )
        for line in sink_ratios({name: clock for name, _rows, clock, _note in sink}):
            print(f"  {line}")
        print(f"  {load()}")

        print(f"\ndashboard queries over {args.transactions:,} transactions ({events:,} events);")
        print(f"  {load()}")
        print(f"median of {args.runs} runs, ms; baseline = the same answer from the raw table")
        header = f"  {'window':<22} {'query':<36} {'roll-up':>8} {'raw':>9} {'raw/roll-up':>11}"
        print(header + "  <= 100 ms")
        for window, name, rollup_ms, raw_ms in query_figures(wh, end, args.runs):
            raw = f"{raw_ms:>9.1f}" if raw_ms is not None else f"{'-':>9}"
            ratio = f"{raw_ms / rollup_ms:>10.1f}x" if raw_ms is not None else f"{'-':>11}"
            ok = "yes" if rollup_ms <= 100 else "NO"
            if name.startswith("whole dashboard"):
                ok = "(a page refresh: 6 queries)"
            elif name.startswith("model scores"):
                ok += " (2 queries)"
            print(f"  {window:<22} {name:<36} {rollup_ms:>8.1f} {raw} {ratio}  {ok}")
    finally:
        wh.close()
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()

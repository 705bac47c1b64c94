"""bench/analytics/flush_cost: what one sink flush costs, by its size: the fixed part (a part
in each of the events table and its roll-ups, the lookup of stored ids) against the part
that grows with rows. It says which flush interval keeps the sink's CPU per row near its
floor at a given rate.

    .venv/bin/python -m bench.analytics.flush_cost [--sizes 10,100,1000,10000] [--runs 5]

CPU is this process's (the embedded engine's threads included), per flush and per row,
for ``analytics.sink.store_new_events`` on batches decoded as the sink decodes them. A fresh
engine directory under .local/bench is removed afterwards. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from analytics.clickhouse import Warehouse
from analytics.sink import store_new_events
from bench.analytics.run import decode, fresh_payloads, sample_records
from bench.proctree import load_average
from domain import records

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    path = REPO / ".local" / "bench" / f"flush-cost-{os.getpid()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    warehouse = Warehouse(f"chdb://{path}")
    templates = [records.encode(r) for r in sample_records(300, datetime.now(UTC))]
    started_load = load_average()
    print(f"bench/analytics/flush_cost: load average {started_load}")
    rows = []
    print(f"  {'rows':>7} {'cpu ms/flush':>13} {'wall ms':>8} {'cpu µs/row':>11}")
    try:
        store_new_events(warehouse, decode(fresh_payloads(templates, 100, datetime.now(UTC))).table)
        for size in sizes:
            cpu, wall = [], []
            for _ in range(args.runs):
                table = decode(fresh_payloads(templates, size, datetime.now(UTC))).table
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                store_new_events(warehouse, table)
                cpu.append(time.process_time() - cpu_start)
                wall.append(time.perf_counter() - wall_start)
            cpu_ms, wall_ms = 1000 * statistics.median(cpu), 1000 * statistics.median(wall)
            print(f"  {size:>7} {cpu_ms:>13.1f} {wall_ms:>8.1f} {1000 * cpu_ms / size:>11.1f}")
            rows.append(
                {"rows": size, "cpu_ms_per_flush": round(cpu_ms, 1), "wall_ms": round(wall_ms, 1)}
            )
    finally:
        shutil.rmtree(path, ignore_errors=True)
    # The last line: one JSON object (issue 12, item 6: a flush's cost by its size).
    print(json.dumps({"load_average_start": started_load, "flushes": rows}))


if __name__ == "__main__":
    main()

"""CPU seconds of the bench's own process and of the PostgreSQL cluster it talks to.

The machine is shared, so wall-clock transfers/s moves with whatever else runs; transfers
per CPU-second (this process + every PostgreSQL process) does not, and the split says which
side bounds the writer. PostgreSQL's side is the postmaster's own time, the time of its
children that already exited (the kernel adds it to the postmaster's ``cutime``/``cstime``
when it reaps them, as it does for the seed's 32 client backends) and the time of its
children alive now (backends, WAL writer, checkpointer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.proctree import load_average, trees_cpu_s

__all__ = ["CpuMeter", "CpuSample", "load_average", "postmaster_pid"]


def _cluster_cpu_s(postmaster: int) -> float:
    return trees_cpu_s({"postgres": [postmaster]})["postgres"]


@dataclass(frozen=True)
class CpuSample:
    wall_s: float
    process_s: float
    postgres_s: float


class CpuMeter:
    """Samples CPU before and after a run; ``postmaster`` is None when the server is not on
    this machine (then only this process is counted)."""

    def __init__(self, postmaster: int | None) -> None:
        self.postmaster = postmaster

    def sample(self) -> CpuSample:
        postgres = _cluster_cpu_s(self.postmaster) if self.postmaster else 0.0
        return CpuSample(time.perf_counter(), time.process_time(), postgres)


def postmaster_pid(data_dir: Path) -> int | None:
    """The postmaster of a cluster whose data directory is on this machine."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError, PermissionError):
        return None

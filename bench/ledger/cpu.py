"""CPU seconds of the bench's own process and of the PostgreSQL cluster it talks to.

The machine is shared, so wall-clock transfers/s moves with whatever else runs; transfers
per CPU-second (this process + every PostgreSQL process) does not, and the split says which
side bounds the writer. PostgreSQL's side is the postmaster's own time, the time of its
children that already exited (the kernel adds it to the postmaster's ``cutime``/``cstime``
when it reaps them, as it does for the seed's 32 client backends) and the time of its
children alive now (backends, WAL writer, checkpointer).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name may hold spaces and parentheses: split after the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cluster_ticks(postmaster: int) -> int:
    fields = _stat_fields(postmaster)
    # After the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based.
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            child = _stat_fields(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked: the postmaster's cutime has it (or soon will)
        if int(child[1]) == postmaster:
            total += int(child[11]) + int(child[12])
    return total


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
        postgres = _cluster_ticks(self.postmaster) / _TICKS_PER_S if self.postmaster else 0.0
        return CpuSample(time.perf_counter(), time.process_time(), postgres)


def postmaster_pid(data_dir: Path) -> int | None:
    """The postmaster of a cluster whose data directory is on this machine."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError, PermissionError):
        return None


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])

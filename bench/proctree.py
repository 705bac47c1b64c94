"""CPU seconds of a process and everything under it, from /proc, for the benchmarks.

A process tree's CPU is its root's own time, the time of its descendants that already
exited (the kernel adds a reaped child's time to its parent's ``cutime``/``cstime``, so it
reaches the root as the tree is reaped) and the time of the descendants alive now. A
service that forks workers (uvicorn), PostgreSQL's backends, the JVM's threads: all
counted. Sampled before and after a run, the difference is what the tree spent in it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses):
    0 state, 1 ppid, ... 11 utime, 12 stime, 13 cutime, 14 cstime (0-based)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children_by_parent() -> dict[int, list[tuple[int, int]]]:
    """Every live process's (pid, ticks: its own and its reaped children's) by its parent's
    pid: one scan of /proc."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = stat_fields(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked: its parent's cutime has it (or soon will)
        own = sum(int(fields[i]) for i in (11, 12, 13, 14))
        children.setdefault(int(fields[1]), []).append((int(entry.name), own))
    return children


def trees_cpu_s(roots: dict[str, Iterable[int]]) -> dict[str, float]:
    """CPU seconds so far of each named group of process trees (a name → its root pids);
    a root that is gone counts 0. One scan of /proc for all of them."""
    children = _children_by_parent()
    totals: dict[str, float] = {}
    for name, pids in roots.items():
        ticks = 0
        for root in pids:
            try:
                fields = stat_fields(root)
            except (FileNotFoundError, ProcessLookupError):
                continue
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
            stack = [root]
            while stack:
                for pid, own in children.get(stack.pop(), ()):
                    ticks += own
                    stack.append(pid)
        totals[name] = ticks / TICKS_PER_S
    return totals


def tree_pids(roots: Iterable[int]) -> list[int]:
    """The live pids of ``roots`` and of everything under them."""
    children = _children_by_parent()
    found, stack = [], [r for r in roots if os.path.exists(f"/proc/{r}")]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(child for child, _ticks in children.get(pid, ()))
    return found


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def thread_group(name: str) -> str:
    """A thread's name (the kernel keeps its first 15 characters) without its trailing
    number, so that a pool's threads add up: ``GC Thread#0`` and ``#1`` are one group."""
    return re.sub(r"[-#_ ]?\d+$", "", name) or name


def threads_cpu_s(pids: Iterable[int]) -> dict[str, float]:
    """CPU seconds so far of the live threads of ``pids`` (not of their children), by
    thread group (``thread_group``): where a process's time goes (the broker's network
    threads, its request handlers, its garbage collector, its JIT compilers)."""
    groups: dict[str, float] = {}
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            try:
                name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            fields = stat.rsplit(")", 1)[1].split()
            group = thread_group(name)
            ticks = int(fields[11]) + int(fields[12])
            groups[group] = groups.get(group, 0.0) + ticks / TICKS_PER_S
    return groups

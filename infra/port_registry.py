"""Which ports every local stack on this machine has promised itself, in one file.

A stack picks its ports once (`walletpipe up`) and keeps them in its own stack.json. The
HTTP ports belong to services that only run later (`walletpipe run`), so at `up` time a
port another checkout's stopped API will use looks free: two checkouts would both pick
18080 and one's CLI would talk to the other's API. Every stack therefore records its ports
here, under a lock, and picks around the ports of every other stack still on disk.

The file maps a stack directory (absolute) to its ports. An entry whose stack.json is gone
(the directory was removed) no longer promises anything and is dropped on the next write.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.processes import file_lock

#: Stacks whose ports one registry keeps; past it the oldest entries are dropped.
STACKS_MAX = 256


def default_path() -> Path:
    """Per OS user, in the temporary directory: shared by every checkout of this user."""
    return Path(tempfile.gettempdir()) / f"walletpipe-{os.getuid()}" / "ports.json"


class PortRegistry:
    def __init__(self, path: Path, state_file: str) -> None:
        self._path = path
        self._state_file = state_file

    @contextmanager
    def claiming(self, local_dir: Path, *, timeout_s: float) -> Iterator[PortClaims]:
        """Hold the registry's lock while a stack picks its ports; write them at the end."""
        with file_lock(self._path.with_suffix(".lock"), timeout_s=timeout_s):
            entries = self._live_entries()
            claims = PortClaims(
                others={
                    port
                    for directory, ports in entries.items()
                    if directory != str(local_dir)
                    for port in ports.values()
                }
            )
            yield claims
            if claims.ports is not None:
                entries.pop(str(local_dir), None)
                entries[str(local_dir)] = dict(claims.ports)
                while len(entries) > STACKS_MAX:
                    entries.pop(next(iter(entries)))
                self._write(entries)

    def _live_entries(self) -> dict[str, dict[str, int]]:
        try:
            raw = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        live: dict[str, dict[str, int]] = {}
        for directory, ports in raw.items():
            if not isinstance(ports, dict) or not (Path(directory) / self._state_file).exists():
                continue
            try:
                live[directory] = {str(name): int(port) for name, port in ports.items()}
            except (TypeError, ValueError):
                continue
        return live

    def _write(self, entries: dict[str, dict[str, int]]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1) + "\n")
        os.replace(tmp, self._path)


class PortClaims:
    """Inside `PortRegistry.claiming`: the ports other stacks hold, and ours once chosen."""

    def __init__(self, others: set[int]) -> None:
        self.others = others
        self.ports: dict[str, int] | None = None

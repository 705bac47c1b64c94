"""The status file of ``walletpipe run`` (``<local dir>/services.json``, written by the
supervisor on every start and exit): read and shown by ``walletpipe status``."""

from __future__ import annotations

import json
from pathlib import Path


def read_status(path: Path) -> dict | None:
    """The status file of a running ``walletpipe run``, or None (none, or its supervisor
    is gone: a file left by a killed supervisor is stale)."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = body.get("supervisor_pid")
    if not isinstance(pid, int) or not Path(f"/proc/{pid}").exists():
        return None
    return body  # type: ignore[no-any-return]


def format_status(body: dict) -> str:
    rows = []
    for name, s in body.get("services", {}).items():
        where = f"pid {s['pid']}" if s.get("pid") else f"restart in {s.get('restart_in_s')}s"
        extra = f"restarts {s['restarts']}"
        if s.get("last_exit_code") is not None:
            extra += f", last exit {s['last_exit_code']} at {s['last_exit_at']}"
        if s.get("crash_loop"):
            extra += "  CRASH LOOP: see its log"
        rows.append(f"{name:<10}  {s['status']:<10}  {where:<18}  {extra}")
    return "\n".join(rows)

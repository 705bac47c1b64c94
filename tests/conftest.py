"""Fixtures shared by every test folder.

Only the `stack` and `start_stack` fixtures start processes, and only when a test asks for
them: `pytest tests/unit` starts nothing. Every stack started here is stopped at the end of
the session, and again from an atexit hook (also reached on SIGTERM), so an interrupted or
crashed run leaves no broker or postmaster behind. Stack state (the Postgres data, Kafka
logs) survives between runs for speed; tests create their own rows with fresh uuids and
never rely on what an earlier run left.
"""

from __future__ import annotations

import atexit
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

REPO = Path(__file__).resolve().parent.parent
# `pytest` (not only `python -m pytest`) must find the packages without an install.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from infra.settings import StackSettings

import os  # noqa: E402

# Two suites running at once (two engineers, or a helper) each set their own directory.
TEST_STACK_DIR = Path(os.environ.get("WALLETPIPE_TEST_STACK_DIR", REPO / ".local" / "test-stack"))

StartStack = Callable[..., dict[str, str]]

# Every stack directory brought up in this session, with the settings it was started with.
_started: dict[Path, StackSettings | None] = {}


def _down_all() -> None:
    """Stop every stack this session started; errors are reported, never raised at exit."""
    if not _started:
        return
    from infra import stack as infra_stack

    for local_dir, settings in list(_started.items()):
        try:
            infra_stack.down(local_dir, settings=settings)
        except Exception as exc:  # noqa: BLE001 - best effort at exit, keep stopping others
            print(f"conftest: down({local_dir}) failed: {exc}", file=sys.stderr)
        _started.pop(local_dir, None)


atexit.register(_down_all)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM (CI timeout, `kill`) into SystemExit so finalizers and atexit run."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


@pytest.fixture(scope="session")
def start_stack() -> Iterator[StartStack]:
    """Factory: `start_stack(local_dir, settings=None)` runs `infra.stack.up` and
    guarantees the matching `down` at session end."""
    from infra import stack as infra_stack

    def start(local_dir: Path, settings: StackSettings | None = None) -> dict[str, str]:
        # Registered before up(): a half-started stack must be stopped too.
        _started[local_dir] = settings
        _exit_on_sigterm()
        return infra_stack.up(local_dir, settings=settings)

    try:
        yield start
    finally:
        _down_all()


@pytest.fixture(scope="session")
def stack_dir() -> Path:
    return TEST_STACK_DIR


@pytest.fixture(scope="session")
def stack(start_stack: StartStack, stack_dir: Path) -> dict[str, str]:
    """The shared test stack (`.local/test-stack`): its stack.env mapping."""
    return start_stack(stack_dir)

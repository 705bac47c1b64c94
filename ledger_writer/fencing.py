"""One writer per shard: a PostgreSQL advisory lock held by the session the writer writes
with.

Two writers on one shard would each load balances, plan, and write them back: one's update
would overwrite the other's. So before it joins its consumer group, a writer takes a
session-level advisory lock keyed by that group (a shard's writers share their group, and
with it the key) on the very connection its batches go through. A second writer finds the
lock taken and waits as a standby, asking again every ``standby_poll_ms``; it takes over
when the first one's session ends, which PostgreSQL notices when the process exits, is
killed, or loses its connection, and then releases the lock.

Since every write goes through the locked session, a writer that lost its session cannot
write either: it must reconnect and take the lock again first. The balance updates are
checked against what the batch read as well (``store._write_balances``), so even writers
that bypass the lock (another consumer group on the same database) cannot lose an update:
the second one's batch rolls back as an invariant breach.
"""

from __future__ import annotations

import hashlib
import logging
import threading

import psycopg

log = logging.getLogger("ledger_writer")


def lock_key(group: str) -> int:
    """The advisory lock key of a consumer group's writer: 64 bits of a hash, signed."""
    digest = hashlib.sha256(f"ledger-writer:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def try_lock(conn: psycopg.Connection, key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


def holder(conn: psycopg.Connection, key: int) -> int | None:
    """The backend pid that holds ``key``, if any (for the standby's log line)."""
    row = conn.execute(
        """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
              AND classid = ((%s >> 32) & 4294967295)::oid AND objid = (%s & 4294967295)::oid
              AND objsubid = 1 LIMIT 1""",
        (key, key),
    ).fetchone()
    return int(row[0]) if row else None


def hold(conn: psycopg.Connection, group: str, stop: threading.Event, poll_s: float) -> bool:
    """Take the writer lock of ``group`` on ``conn``, waiting as a standby while another
    session holds it. True once held; False if ``stop`` was set first."""
    key = lock_key(group)
    waited = False
    while not stop.is_set():
        if try_lock(conn, key):
            if waited:
                log.warning("taking over: the writer lock of group %s is free", group)
            log.info("holding the writer lock of group %s (key %d)", group, key)
            return True
        if not waited:
            log.warning(
                "standby: another writer of group %s (backend pid %s) holds its lock;"
                " asking again every %.1f s",
                group,
                holder(conn, key),
                poll_s,
            )
            waited = True
        stop.wait(poll_s)
    return False

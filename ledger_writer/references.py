"""The foreign keys of a batch's rows, checked once per batch instead of once per row.

PostgreSQL checks a foreign key with a trigger per inserted row: a small query each, planned
and run one at a time (nine per transfer: the transaction's two wallets, three events' and
two entries' transaction, two entries' wallet). In a profile of the writer that was over a
third of PostgreSQL's time. The writer knows every row of a batch before it writes, so it
does the same check as one query per referenced table, in the same transaction:

* every wallet a row names exists, and is locked ``FOR KEY SHARE`` until the commit, as
  the trigger locks it (no one can delete it or change its key meanwhile);
* every transaction an event, entry, hold or reversal names exists: inserted by this batch
  (then it exists by construction) or already stored (checked and locked like a wallet).

Any miss raises ``LedgerInvariantError`` before the commit, so the batch is rolled back,
as the trigger's error would have rolled it back. The triggers are skipped only for the
writer's own transaction (``SET LOCAL session_replication_role = replica``), which only a
superuser may do; under any other role the triggers check as before and nothing is done
here. The constraints stay declared, and every other writer (the API) is checked by them.
"""

from __future__ import annotations

import uuid

import psycopg

from domain.exceptions import LedgerInvariantError
from domain.ids import uuid_array
from ledger_writer.book import BatchPlan

SAMPLE_MAX = 5


def skip_row_triggers(conn: psycopg.Connection, cur: psycopg.Cursor) -> bool:
    """Turn the per-row foreign key triggers off for this transaction, if this role may;
    returns whether it did (then ``check_references`` must run before the commit)."""
    if conn.info.parameter_status("is_superuser") != "on":
        return False
    cur.execute("SET LOCAL session_replication_role = replica")
    return True


def check_references(cur: psycopg.Cursor, plan: BatchPlan) -> None:
    """Every wallet and transaction the batch's rows reference exists (and stays)."""
    wallets: set[uuid.UUID] = set()
    for row in plan.transactions:
        wallets.add(row[3])
        wallets.add(row[4])
    wallets.discard(None)  # a deposit or withdrawal names none
    wallets.update(entry[2] for entry in plan.entries)
    wallets.update(hold[1] for hold in plan.holds_opened)
    inserted = {row[0] for row in plan.transactions}
    named = {event[1] for event in plan.events}
    named.update(entry[1] for entry in plan.entries)
    named.update(hold[0] for hold in plan.holds_opened)
    for reversal_id, original_id, _amount, _at in plan.reversals:
        named.add(reversal_id)
        named.add(original_id)
    _check_present(cur, "wallets", "wallet_id", wallets)
    _check_present(cur, "transactions", "transaction_id", named - inserted)


def _check_present(cur: psycopg.Cursor, table: str, key: str, ids: set[uuid.UUID]) -> None:
    if not ids:
        return
    literal = uuid_array(ids)
    found = cur.execute(
        f"""WITH present AS (SELECT {key} FROM {table} WHERE {key} = ANY(%s::uuid[])
                              FOR KEY SHARE)
            SELECT count(*) FROM present""",
        (literal,),
    ).fetchone()
    if found is not None and found[0] == len(ids):
        return
    missing = cur.execute(
        f"""SELECT v.id FROM unnest(%s::uuid[]) AS v(id)
             WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{key} = v.id) LIMIT %s""",
        (literal, SAMPLE_MAX),
    ).fetchall()
    raise LedgerInvariantError(
        f"batch rows name {table} that do not exist: {[str(m) for (m,) in missing]}"
    )

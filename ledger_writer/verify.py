"""``walletpipe ledger verify``: prove the books balance, or name what is wrong.

Each check is one SQL query that returns the offending rows (at most ``SAMPLE_MAX``); an
empty answer is a pass. The checks read committed data only, so they can run beside a live
writer.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ledger_writer import chain
from ledger_writer.rows import Row

SAMPLE_MAX = 5

_SIGNED = "CASE e.entry_type WHEN 'CREDIT' THEN e.amount ELSE -e.amount END"

CHECKS: tuple[tuple[str, str], ...] = (
    (
        "every transaction's entries sum to zero",
        f"""SELECT e.transaction_id, sum({_SIGNED}) FROM ledger_entries e
          GROUP BY e.transaction_id HAVING sum({_SIGNED}) <> 0 LIMIT {SAMPLE_MAX}""",
    ),
    (
        "all accounts together sum to zero per currency",
        """SELECT currency_code, sum(total) FROM (
            SELECT w.currency_code, b.available_balance + b.reserved_balance AS total
              FROM wallet_balances b JOIN wallets w USING (wallet_id)
            UNION ALL SELECT currency_code, balance FROM system_balances) t
         GROUP BY currency_code HAVING sum(total) <> 0""",
    ),
    (
        "every wallet balance equals the sum of its entries",
        f"""SELECT b.wallet_id, b.available_balance + b.reserved_balance, coalesce(s.total, 0)
           FROM wallet_balances b
           LEFT JOIN (SELECT e.wallet_id, sum({_SIGNED}) AS total FROM ledger_entries e
                       GROUP BY e.wallet_id) s USING (wallet_id)
          WHERE b.available_balance + b.reserved_balance <> coalesce(s.total, 0)
          LIMIT {SAMPLE_MAX}""",
    ),
    (
        "every system account equals the sum of its entries",
        f"""SELECT b.wallet_id, b.balance, coalesce(s.total, 0) FROM system_balances b
           LEFT JOIN (SELECT e.wallet_id, sum({_SIGNED}) AS total FROM ledger_entries e
                       GROUP BY e.wallet_id) s USING (wallet_id)
          WHERE b.balance <> coalesce(s.total, 0) LIMIT {SAMPLE_MAX}""",
    ),
    (
        "no customer balance is negative",
        f"""SELECT wallet_id, available_balance, reserved_balance, pending_balance
           FROM wallet_balances
          WHERE available_balance < 0 OR reserved_balance < 0 OR pending_balance < 0
          LIMIT {SAMPLE_MAX}""",
    ),
    (
        "every completed transaction has balanced entries, every failed or pending one none",
        f"""SELECT t.transaction_id, t.transaction_status, count(e.entry_id)
           FROM transactions t LEFT JOIN ledger_entries e USING (transaction_id)
          GROUP BY t.transaction_id, t.transaction_status
         HAVING (t.transaction_status IN ('COMPLETED', 'REVERSED') AND count(e.entry_id) < 2)
             OR (t.transaction_status IN ('FAILED', 'PENDING') AND count(e.entry_id) > 0)
          LIMIT {SAMPLE_MAX}""",
    ),
    (
        "every transaction's event chain fits its status",
        f"""SELECT t.transaction_id, t.transaction_status,
                array_agg(ev.event_type ORDER BY ev.created_at)
           FROM transactions t LEFT JOIN transaction_events ev USING (transaction_id)
          GROUP BY t.transaction_id, t.transaction_status
         HAVING NOT coalesce(bool_or(ev.event_type = 'INITIATED'), false)
             OR (t.transaction_status IN ('COMPLETED', 'REVERSED')
                 AND NOT bool_or(ev.event_type = 'SETTLED'))
             OR (t.transaction_status = 'REVERSED' AND NOT bool_or(ev.event_type = 'REVERSED'))
             OR (t.transaction_status = 'FAILED' AND NOT bool_or(ev.event_type = 'FAILED'))
             OR (t.transaction_status = 'PENDING' AND (NOT bool_or(ev.event_type = 'AUTHORIZED')
                 OR bool_or(ev.event_type IN ('SETTLED', 'FAILED', 'REVERSED'))))
             OR (t.transaction_status <> 'FAILED' AND bool_or(ev.event_type = 'FAILED'))
          LIMIT {SAMPLE_MAX}""",
    ),
    (
        "every pending transaction has an open hold, and only pending ones",
        f"""SELECT t.transaction_id, t.transaction_status, h.outcome
           FROM transactions t JOIN ledger_holds h USING (transaction_id)
          WHERE (t.transaction_status = 'PENDING') <> (h.closed_at IS NULL)
             OR (h.outcome = 'CAPTURED' AND t.transaction_status NOT IN ('COMPLETED', 'REVERSED'))
         UNION ALL
         SELECT t.transaction_id, t.transaction_status, NULL FROM transactions t
          WHERE t.transaction_status = 'PENDING'
            AND NOT EXISTS (SELECT 1 FROM ledger_holds h
                             WHERE h.transaction_id = t.transaction_id)
          LIMIT {SAMPLE_MAX}""",
    ),
    (
        "every wallet's reserved balance equals the sum of its open holds",
        f"""SELECT b.wallet_id, b.reserved_balance, coalesce(h.held, 0)
           FROM wallet_balances b
           LEFT JOIN (SELECT wallet_id, sum(amount) AS held FROM ledger_holds
                       WHERE closed_at IS NULL GROUP BY wallet_id) h USING (wallet_id)
          WHERE b.reserved_balance <> coalesce(h.held, 0)
          LIMIT {SAMPLE_MAX}""",
    ),
    (
        "no reversal exceeds its original, and only fully reversed ones are REVERSED",
        f"""SELECT t.transaction_id, t.transaction_status, coalesce(r.total, 0), m.moved
           FROM transactions t
           JOIN LATERAL (SELECT coalesce(h.captured_amount, t.amount) AS moved
                           FROM (SELECT 1) one LEFT JOIN ledger_holds h
                             ON h.transaction_id = t.transaction_id) m ON true
           LEFT JOIN (SELECT original_id, sum(amount) AS total FROM ledger_reversals
                       GROUP BY original_id) r ON r.original_id = t.transaction_id
          WHERE coalesce(r.total, 0) > m.moved
             OR (t.transaction_status = 'REVERSED') <> (coalesce(r.total, 0) = m.moved)
          LIMIT {SAMPLE_MAX}""",
    ),
    (
        "every transaction's total is amount plus fee",
        f"""SELECT transaction_id FROM transactions WHERE total_amount <> amount + fee_amount
          LIMIT {SAMPLE_MAX}""",
    ),
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    offenders: list[Row]

    @property
    def passed(self) -> bool:
        return not self.offenders


CHAIN_CHECK = "the hash chain over the ledger entries is intact"


def verify(database_url: str) -> list[CheckResult]:
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        results = [CheckResult(name, conn.execute(sql).fetchall()) for name, sql in CHECKS]
        results.append(CheckResult(CHAIN_CHECK, chain_breaks(conn)))
        return results


def chain_breaks(conn: psycopg.Connection, fetch_rows: int = 10_000) -> list[Row]:
    """Recompute the chain in order (streamed, bounded memory); the first breaks found."""
    breaks: list[Row] = []
    unchained = conn.execute(
        "SELECT entry_id FROM ledger_entries WHERE chain_seq IS NULL LIMIT %s", (SAMPLE_MAX,)
    ).fetchall()
    breaks.extend((entry_id, "entry is not in the chain") for (entry_id,) in unchained)
    expected_seq, prev = 1, chain.GENESIS
    with conn.cursor(name="ledger_chain") as cur:
        cur.itersize = fetch_rows
        cur.execute(
            """SELECT entry_id, transaction_id, wallet_id, entry_type, amount, balance_after,
                      created_at, chain_seq, prev_hash, entry_hash
                 FROM ledger_entries WHERE chain_seq IS NOT NULL ORDER BY chain_seq"""
        )
        for row in cur:
            seq, stored_prev, stored_hash = row[7], bytes(row[8]), bytes(row[9])
            if seq != expected_seq:
                breaks.append((seq, f"sequence jumps from {expected_seq - 1} to {seq}"))
            elif stored_prev != prev:
                breaks.append((seq, "prev_hash is not the previous entry's hash"))
            elif chain.entry_hash(prev, seq, row) != stored_hash:
                breaks.append((seq, f"entry {row[0]} does not match its hash"))
            if len(breaks) >= SAMPLE_MAX:
                break
            expected_seq, prev = seq + 1, stored_hash
    return breaks


def summary(conn_url: str) -> dict[str, object]:
    with psycopg.connect(conn_url) as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                "SELECT transaction_status, count(*) FROM transactions GROUP BY 1"
            ).fetchall()
        )
        entries = conn.execute("SELECT count(*) FROM ledger_entries").fetchone()
    return {"transactions": counts, "ledger_entries": entries[0] if entries else 0}

"""``walletpipe ledger verify``: prove the books balance, or name what is wrong.

Each check is one SQL query that returns the offending rows (at most ``SAMPLE_MAX``); an
empty answer is a pass. The checks read committed data only, so they can run beside a live
writer.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

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
        "every completed transaction has balanced entries, every failed one none",
        f"""SELECT t.transaction_id, t.transaction_status, count(e.entry_id)
           FROM transactions t LEFT JOIN ledger_entries e USING (transaction_id)
          GROUP BY t.transaction_id, t.transaction_status
         HAVING (t.transaction_status = 'COMPLETED' AND count(e.entry_id) < 2)
             OR (t.transaction_status = 'FAILED' AND count(e.entry_id) > 0)
          LIMIT {SAMPLE_MAX}""",
    ),
    (
        "every transaction's event chain fits its status",
        f"""SELECT t.transaction_id, t.transaction_status,
                array_agg(ev.event_type ORDER BY ev.created_at)
           FROM transactions t LEFT JOIN transaction_events ev USING (transaction_id)
          GROUP BY t.transaction_id, t.transaction_status
         HAVING NOT bool_or(ev.event_type = 'INITIATED')
             OR (t.transaction_status = 'COMPLETED' AND NOT bool_or(ev.event_type = 'SETTLED'))
             OR (t.transaction_status = 'FAILED' AND NOT bool_or(ev.event_type = 'FAILED'))
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
    offenders: list[tuple]

    @property
    def passed(self) -> bool:
        return not self.offenders


def verify(database_url: str) -> list[CheckResult]:
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return [CheckResult(name, conn.execute(sql).fetchall()) for name, sql in CHECKS]


def summary(conn_url: str) -> dict[str, object]:
    with psycopg.connect(conn_url) as conn:
        counts = dict(
            conn.execute(
                "SELECT transaction_status, count(*) FROM transactions GROUP BY 1"
            ).fetchall()
        )
        entries = conn.execute("SELECT count(*) FROM ledger_entries").fetchone()
    return {"transactions": counts, "ledger_entries": entries[0] if entries else 0}

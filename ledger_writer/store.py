"""The ledger's PostgreSQL side: load state for a batch, write a plan in ONE transaction.

Rows go in with COPY; balances with one UPDATE over unnest() arrays; the consumed offsets and
the outbox in the same transaction, so a crash either keeps the whole batch or none of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import psycopg

from domain import fast_records, records
from domain.exceptions import LedgerInvariantError
from domain.ids import uuid_array
from domain.money import CURRENCY_EXPONENTS
from domain.shards import clearing_account_name, clearing_wallet_id
from domain.transactions import SYSTEM_USER_ID, SystemAccount, TransactionType, system_wallet_id
from ledger_writer import chain, copy_text, references
from ledger_writer.planning import Account, BatchPlan, Hold, Original, check_entries_balanced
from ledger_writer.rows import Row

_TRANSACTION_COLUMNS = (
    "transaction_id, transaction_type, transaction_status, source_wallet_id, "
    "destination_wallet_id, external_reference_id, amount, currency_code, fee_amount, "
    "total_amount, description, metadata, created_at, updated_at, completed_at, "
    "idempotency_key, ip_address, user_agent, risk_score"
)
_EVENT_COLUMNS = (
    "event_id, transaction_id, event_type, event_status, event_data, error_code, "
    "error_message, created_at"
)
_HOLD_COLUMNS = "transaction_id, wallet_id, amount, currency_code, command, expires_at, created_at"
_ENTRY_COLUMNS = (
    "entry_id, transaction_id, wallet_id, entry_type, amount, balance_after, created_at, "
    "chain_seq, prev_hash, entry_hash"
)
#: pg_advisory_xact_lock key of this shard's hash chain head: one appender at a time.
CHAIN_LOCK = 0x1ED6E7C4A1


def ensure_system_accounts(
    conn: psycopg.Connection, now: datetime, shard: int = 0, peers: Iterable[int] = ()
) -> None:
    """The system user and its clearing and fee wallets, one per currency, and with shards
    a clearing account per peer shard and currency (idempotent)."""
    with conn.transaction():
        conn.execute(
            """INSERT INTO users (user_id, email, phone_number, password_hash, salt, first_name,
                   last_name, date_of_birth, status, kyc_status, created_at, updated_at)
               VALUES (%s, 'system@wallet-pipeline.invalid', '+0000000000', '!', '!',
                   'System', 'Accounts', '1970-01-01', 'ACTIVE', 'VERIFIED', %s, %s)
               ON CONFLICT (user_id) DO NOTHING""",
            (SYSTEM_USER_ID, now, now),
        )
        rows = [
            (system_wallet_id(account, currency), account.value, currency)
            for currency in CURRENCY_EXPONENTS
            for account in SystemAccount
        ]
        rows += [
            (clearing_wallet_id(shard, peer, currency), clearing_account_name(peer), currency)
            for currency in CURRENCY_EXPONENTS
            for peer in peers
        ]
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO wallets (wallet_id, user_id, wallet_type, currency_code, status,
                       created_at, updated_at)
                   VALUES (%s, %s, 'SYSTEM', %s, 'ACTIVE', %s, %s)
                   ON CONFLICT (wallet_id) DO NOTHING""",
                [(w, SYSTEM_USER_ID, c, now, now) for w, _a, c in rows],
            )
            cur.executemany(
                """INSERT INTO system_balances (wallet_id, account, currency_code, last_updated_at)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (wallet_id) DO NOTHING""",
                [(w, a, c, now) for w, a, c in rows],
            )


def load_offsets(conn: psycopg.Connection, group: str, topic: str) -> dict[int, int]:
    rows = conn.execute(
        "SELECT partition, next_offset FROM consumer_offsets"
        " WHERE consumer_group = %s AND topic = %s",
        (group, topic),
    ).fetchall()
    return dict(rows)


def already_posted(
    conn: psycopg.Connection, transaction_ids: list[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The ids the ledger recorded already, with their status."""
    rows = conn.execute(
        "SELECT transaction_id, transaction_status FROM transactions"
        " WHERE transaction_id = ANY(%s::uuid[])",
        (uuid_array(transaction_ids),),
    ).fetchall()
    return dict(rows)


def load_accounts(
    conn: psycopg.Connection, wallet_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Account]:
    ids = uuid_array(wallet_ids)
    accounts: dict[uuid.UUID, Account] = {}
    customer = conn.execute(
        """SELECT w.wallet_id, w.currency_code, w.status, b.available_balance,
                  b.reserved_balance, b.version
             FROM wallets w JOIN wallet_balances b USING (wallet_id)
            WHERE w.wallet_id = ANY(%s::uuid[])""",
        (ids,),
    ).fetchall()
    for wallet_id, currency, status, available, reserved, version in customer:
        accounts[wallet_id] = Account(
            wallet_id, currency, status, False, available, reserved, None, version
        )
    system = conn.execute(
        "SELECT wallet_id, currency_code, balance FROM system_balances"
        " WHERE wallet_id = ANY(%s::uuid[])",
        (ids,),
    ).fetchall()
    for wallet_id, currency, balance in system:
        accounts[wallet_id] = Account(wallet_id, currency, "ACTIVE", True, balance)
    return accounts


def load_holds(conn: psycopg.Connection, transaction_ids: list[uuid.UUID]) -> dict[uuid.UUID, Hold]:
    """The holds these gateway results answer, open or closed."""
    rows = conn.execute(
        """SELECT wallet_id, amount, command, expires_at, closed_at IS NULL FROM ledger_holds
            WHERE transaction_id = ANY(%s)""",
        (transaction_ids,),
    ).fetchall()
    return {hold.command.transaction_id: hold for hold in map(_hold, rows)}


def expired_holds(conn: psycopg.Connection, now: datetime, limit: int) -> dict[uuid.UUID, Hold]:
    """Open holds past their expiry, oldest first (bounded: the rest go in later batches)."""
    rows = conn.execute(
        """SELECT wallet_id, amount, command, expires_at, true FROM ledger_holds
            WHERE closed_at IS NULL AND expires_at <= %s ORDER BY expires_at LIMIT %s""",
        (now, limit),
    ).fetchall()
    return {hold.command.transaction_id: hold for hold in map(_hold, rows)}


def load_originals(
    conn: psycopg.Connection, transaction_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Original]:
    """The transactions these reversals name, with what moved and what is reversed."""
    rows = conn.execute(
        """SELECT t.transaction_id, t.transaction_type, t.transaction_status,
                  t.source_wallet_id, t.destination_wallet_id, t.currency_code,
                  coalesce(h.captured_amount, t.amount),
                  (SELECT coalesce(sum(r.amount), 0) FROM ledger_reversals r
                    WHERE r.original_id = t.transaction_id)
             FROM transactions t LEFT JOIN ledger_holds h USING (transaction_id)
            WHERE t.transaction_id = ANY(%s)""",
        (transaction_ids,),
    ).fetchall()
    return {
        row[0]: Original(TransactionType(row[1]), row[2], row[3], row[4], row[5], row[6], row[7])
        for row in rows
    }


def _hold(row: Row) -> Hold:
    wallet_id, amount, command, expires_at, is_open = row
    decoded = fast_records.decode_ledger_input(bytes(command))
    if not isinstance(decoded, records.PostTransaction):
        raise LedgerInvariantError(f"hold on {wallet_id} does not store a PostTransaction")
    return Hold(decoded, wallet_id, amount, expires_at, is_open)


def write_plan(
    conn: psycopg.Connection,
    plan: BatchPlan,
    offsets: dict[tuple[str, int], int],
    group: str,
    outbox_topic: str,
    now: datetime,
    gateway_topic: str = "gateway.requests",
    shard_credits_topic: str = "ledger.shard-credits",
    wallet_commands_topic: str = "wallet.commands",
) -> None:
    """Write everything of one batch atomically; the caller's connection is in autocommit."""
    check_entries_balanced(plan.entries)
    with conn.transaction(), conn.cursor() as cur:
        if references.skip_row_triggers(conn, cur):
            references.check_references(cur, plan)
        times = copy_text.time_text(now)
        event_json = copy_text.json_memo()
        if plan.transactions:
            copy_text.copy_text(
                cur,
                "transactions",
                _TRANSACTION_COLUMNS,
                (copy_text.tx_line(row, times) for row in plan.transactions),
            )
        if plan.holds_opened:
            with cur.copy(f"COPY ledger_holds ({_HOLD_COLUMNS}) FROM STDIN") as copy:
                for row in plan.holds_opened:
                    copy.write_row(row)
        if plan.reversals:
            with cur.copy(
                "COPY ledger_reversals (reversal_id, original_id, amount, created_at) FROM STDIN"
            ) as copy:
                for row in plan.reversals:
                    copy.write_row(row)
        if plan.status_updates:
            cur.execute(
                """UPDATE transactions t
                      SET transaction_status = v.status,
                          completed_at = coalesce(v.completed_at, t.completed_at),
                          updated_at = %s, version = t.version + 1
                     FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[])
                          AS v(transaction_id, status, completed_at)
                    WHERE t.transaction_id = v.transaction_id""",
                (now, *map(list, zip(*plan.status_updates, strict=True))),
            )
        if plan.holds_closed:
            cur.execute(
                """UPDATE ledger_holds h
                      SET outcome = v.outcome, captured_amount = v.captured, closed_at = v.at
                     FROM unnest(%s::uuid[], %s::text[], %s::numeric[], %s::timestamptz[])
                          AS v(transaction_id, outcome, captured, at)
                    WHERE h.transaction_id = v.transaction_id AND h.closed_at IS NULL""",
                tuple(map(list, zip(*plan.holds_closed, strict=True))),
            )
            _check_rows(cur, len(plan.holds_closed), "open holds closed")
        if plan.events:
            copy_text.copy_text(
                cur,
                "transaction_events",
                _EVENT_COLUMNS,
                (copy_text.event_line(row, times, event_json) for row in plan.events),
            )
        if plan.entries:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
            head = cur.execute(
                """SELECT chain_seq, entry_hash FROM ledger_entries WHERE chain_seq IS NOT NULL
                    ORDER BY chain_seq DESC LIMIT 1"""
            ).fetchone()
            head_seq, head_hash = (head[0], bytes(head[1])) if head else (0, chain.GENESIS)
            linked = chain.link(head_seq, head_hash, plan.entries)
            copy_text.copy_text(
                cur,
                "ledger_entries",
                _ENTRY_COLUMNS,
                (copy_text.entry_line(r, times) for r in linked),
            )
        _write_balances(cur, plan, now)
        outgoing: list[tuple[str, records.Record]] = [(outbox_topic, e) for e in plan.ledger_events]
        outgoing += [(gateway_topic, r) for r in plan.gateway_requests]
        outgoing += [(shard_credits_topic, c) for c in plan.shard_credits]
        # The stream's one input: each ledger event again, addressed to its wallet, and a
        # posted credit addressed to the credited wallet (records.wallet_commands_of).
        outgoing += [
            (wallet_commands_topic, notice)
            for event in plan.ledger_events
            for notice in records.wallet_commands_of(event)
        ]
        if outgoing:
            at = now.isoformat()
            copy_text.copy_text(
                cur,
                "outbox",
                "topic, message_key, payload, created_at",
                (
                    f"{topic}\t{record.partition_key.decode()}\t"
                    f"\\\\x{fast_records.encode(record).hex()}\t{at}\n"
                    for topic, record in outgoing
                ),
            )
        if offsets:
            _store_offsets(cur, offsets, group, now)


def save_offsets(
    conn: psycopg.Connection, offsets: dict[tuple[str, int], int], group: str, now: datetime
) -> None:
    """Only offsets, in a transaction of their own: past records nothing was written for."""
    with conn.transaction(), conn.cursor() as cur:
        _store_offsets(cur, offsets, group, now)


def _store_offsets(
    cur: psycopg.Cursor, offsets: dict[tuple[str, int], int], group: str, now: datetime
) -> None:
    cur.executemany(
        """INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset,
               updated_at) VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (consumer_group, topic, partition)
           DO UPDATE SET next_offset = EXCLUDED.next_offset,
                         updated_at = EXCLUDED.updated_at""",
        [(group, topic, partition, offset, now) for (topic, partition), offset in offsets.items()],
    )


def _write_balances(cur: psycopg.Cursor, plan: BatchPlan, now: datetime) -> None:
    """The changed balances, each UPDATE matching only the row as the batch read it (a
    customer's by its version, a system account's by its balance, which has no version):
    a row another writer changed meanwhile matches nothing, the row count falls short and
    the batch rolls back (``LedgerInvariantError``) instead of losing that update."""
    changed = [plan.accounts[w] for w in plan.changed]
    customers = [a for a in changed if not a.is_system]
    systems = [a for a in changed if a.is_system]
    if customers:
        cur.execute(
            """UPDATE wallet_balances b
                  SET available_balance = v.available, reserved_balance = v.reserved,
                      last_updated_at = %s, version = b.version + 1
                 FROM unnest(%s::uuid[], %s::numeric[], %s::numeric[], %s::int[])
                      AS v(wallet_id, available, reserved, read_version)
                WHERE b.wallet_id = v.wallet_id AND b.version = v.read_version""",
            (
                now,
                uuid_array(a.wallet_id for a in customers),
                copy_text.numeric_array(a.available for a in customers),
                copy_text.numeric_array(a.reserved for a in customers),
                _versions(customers),
            ),
        )
        _check_rows(cur, len(customers), "wallet balances updated as read")
    if systems:
        read = [plan.loaded.get(a.wallet_id) for a in systems]
        if None in read:
            raise LedgerInvariantError("the batch changed a system balance it never loaded")
        cur.execute(
            """UPDATE system_balances s SET balance = v.balance, last_updated_at = %s
                 FROM unnest(%s::uuid[], %s::numeric[], %s::numeric[])
                      AS v(wallet_id, balance, read_balance)
                WHERE s.wallet_id = v.wallet_id AND s.balance = v.read_balance""",
            (
                now,
                uuid_array(a.wallet_id for a in systems),
                copy_text.numeric_array(a.available for a in systems),
                copy_text.numeric_array(r.available for r in read),  # type: ignore[union-attr]
            ),
        )
        _check_rows(cur, len(systems), "system balances updated as read")


def _versions(accounts: list[Account]) -> str:
    """The versions read, as an int[] literal; an account loaded without one (never from
    ``load_accounts``) cannot be updated."""
    if any(a.version is None for a in accounts):
        raise LedgerInvariantError("a customer balance changed without the version it was read at")
    return "{" + ",".join(str(a.version) for a in accounts) + "}"


def _check_rows(cur: psycopg.Cursor, expected: int, what: str) -> None:
    if cur.rowcount != expected:
        raise LedgerInvariantError(
            f"{what}: {cur.rowcount} of {expected}; another writer changed them since this"
            " batch read them (two writers on one shard?), so the batch is rolled back"
        )


def unpublished_outbox(
    conn: psycopg.Connection, topics: list[str], limit: int
) -> list[tuple[int, str, str, bytes]]:
    return conn.execute(
        "SELECT outbox_id, topic, message_key, payload FROM outbox"
        " WHERE published_at IS NULL AND topic = ANY(%s) ORDER BY outbox_id LIMIT %s",
        (topics, limit),
    ).fetchall()


def mark_outbox_published(conn: psycopg.Connection, outbox_ids: list[int]) -> None:
    conn.execute("UPDATE outbox SET published_at = now() WHERE outbox_id = ANY(%s)", (outbox_ids,))


def balance_totals(conn: psycopg.Connection) -> dict[str, Decimal]:
    """Sum of every account per currency: zero when the books balance."""
    rows = conn.execute(
        """SELECT currency_code, sum(total) FROM (
               SELECT w.currency_code, b.available_balance + b.reserved_balance AS total
                 FROM wallet_balances b JOIN wallets w USING (wallet_id)
               UNION ALL SELECT currency_code, balance FROM system_balances) t
            GROUP BY currency_code"""
    ).fetchall()
    return {currency: total for currency, total in rows}

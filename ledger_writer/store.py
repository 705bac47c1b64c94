"""The ledger's PostgreSQL side: load state for a batch, write a plan in ONE transaction.

Rows go in with COPY; balances with one UPDATE over unnest() arrays; the consumed offsets and
the outbox in the same transaction, so a crash either keeps the whole batch or none of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal

import orjson
import psycopg

from domain import fast_records, records
from domain.exceptions import LedgerInvariantError
from domain.ids import uuid_array
from domain.money import CURRENCY_EXPONENTS
from domain.shards import clearing_account_name, clearing_wallet_id
from domain.transactions import SYSTEM_USER_ID, SystemAccount, TransactionType, system_wallet_id
from ledger_writer import chain, references
from ledger_writer.planning import Account, BatchPlan, Hold, Original, check_entries_balanced

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
        """SELECT w.wallet_id, w.currency_code, w.status, b.available_balance, b.reserved_balance
             FROM wallets w JOIN wallet_balances b USING (wallet_id)
            WHERE w.wallet_id = ANY(%s::uuid[])""",
        (ids,),
    ).fetchall()
    for wallet_id, currency, status, available, reserved in customer:
        accounts[wallet_id] = Account(wallet_id, currency, status, False, available, reserved)
    system = conn.execute(
        "SELECT wallet_id, currency_code, balance FROM system_balances"
        " WHERE wallet_id = ANY(%s::uuid[])",
        (ids,),
    ).fetchall()
    for wallet_id, currency, balance in system:
        accounts[wallet_id] = Account(wallet_id, currency, "ACTIVE", True, balance)
    return accounts


def load_remote_accounts(
    conn: psycopg.Connection, wallet_ids: Iterable[uuid.UUID], owners: dict[uuid.UUID, int]
) -> dict[uuid.UUID, Account]:
    """Other shards' wallets as this shard knows them (replicated rows, no balance)."""
    rows = conn.execute(
        "SELECT wallet_id, currency_code, status FROM wallets WHERE wallet_id = ANY(%s)",
        (list(wallet_ids),),
    ).fetchall()
    return {
        w: Account(w, currency, status, False, Decimal(0), remote_shard=owners[w])
        for w, currency, status in rows
    }


def wallet_directory(
    directory: psycopg.Connection, wallet_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[uuid.UUID, str]]:
    """Customer wallet → (its user, its status), from the directory database (the API's)."""
    rows = directory.execute(
        "SELECT wallet_id, user_id, status FROM wallets WHERE wallet_id = ANY(%s)"
        " AND wallet_type <> 'SYSTEM'",
        (wallet_ids,),
    ).fetchall()
    return {wallet_id: (user_id, status) for wallet_id, user_id, status in rows}


def replicate_wallets(
    directory: psycopg.Connection,
    conn: psycopg.Connection,
    wallet_ids: list[uuid.UUID],
    owned: set[uuid.UUID],
    now: datetime,
) -> int:
    """Copy the wallets a shard's rows will name from the directory, with a stand-in of
    their user (the foreign keys need one; no personal data leaves the directory), and a
    zero balance row for the wallets this shard owns. Idempotent; returns rows inserted."""
    present = {
        w
        for (w,) in conn.execute(
            "SELECT wallet_id FROM wallets WHERE wallet_id = ANY(%s)", (wallet_ids,)
        ).fetchall()
    }
    missing = [w for w in wallet_ids if w not in present]
    wallets = (
        directory.execute(
            """SELECT w.wallet_id, w.user_id, w.wallet_type, w.currency_code, w.status,
                      w.created_at, u.status, u.kyc_status, u.created_at
                 FROM wallets w JOIN users u USING (user_id)
                WHERE w.wallet_id = ANY(%s) AND w.wallet_type <> 'SYSTEM'""",
            (missing,),
        ).fetchall()
        if missing
        else []
    )
    with conn.transaction(), conn.cursor() as cur:
        inserted = 0
        for wallet_id, user_id, wtype, currency, status, created, ustatus, kyc, ucreated in wallets:
            cur.execute(
                """INSERT INTO users (user_id, email, phone_number, password_hash, salt,
                       first_name, last_name, date_of_birth, status, kyc_status, created_at,
                       updated_at)
                   VALUES (%s, %s, %s, '!', '!', 'Replica', 'Replica', '1970-01-01', %s, %s,
                       %s, %s)
                   ON CONFLICT DO NOTHING""",
                (
                    user_id,
                    f"{user_id}@shard.invalid",
                    f"r{user_id.hex[:19]}",
                    ustatus,
                    kyc,
                    ucreated,
                    now,
                ),
            )
            cur.execute(
                """INSERT INTO wallets (wallet_id, user_id, wallet_type, currency_code, status,
                       created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT DO NOTHING""",
                (wallet_id, user_id, wtype, currency, status, created, now),
            )
            inserted += cur.rowcount
        if owned:
            cur.execute(
                """INSERT INTO wallet_balances (balance_id, wallet_id, last_updated_at)
                   SELECT gen_random_uuid(), w.wallet_id, %s FROM wallets w
                    WHERE w.wallet_id = ANY(%s) AND NOT EXISTS
                          (SELECT 1 FROM wallet_balances b WHERE b.wallet_id = w.wallet_id)""",
                (now, list(owned)),
            )
            inserted += cur.rowcount
    return inserted


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


def _hold(row: tuple) -> Hold:
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
) -> None:
    """Write everything of one batch atomically; the caller's connection is in autocommit."""
    check_entries_balanced(plan.entries)
    with conn.transaction(), conn.cursor() as cur:
        if references.skip_row_triggers(conn, cur):
            references.check_references(cur, plan)
        time_text = _time_text(now)
        event_json = _json_memo()
        if plan.transactions:
            _copy_text(
                cur,
                "transactions",
                _TRANSACTION_COLUMNS,
                (_tx_line(row, time_text) for row in plan.transactions),
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
            _copy_text(
                cur,
                "transaction_events",
                _EVENT_COLUMNS,
                (_event_line(row, time_text, event_json) for row in plan.events),
            )
        if plan.entries:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
            head = cur.execute(
                """SELECT chain_seq, entry_hash FROM ledger_entries WHERE chain_seq IS NOT NULL
                    ORDER BY chain_seq DESC LIMIT 1"""
            ).fetchone()
            head_seq, head_hash = (head[0], bytes(head[1])) if head else (0, chain.GENESIS)
            linked = chain.link(head_seq, head_hash, plan.entries)
            _copy_text(
                cur, "ledger_entries", _ENTRY_COLUMNS, (_entry_line(r, time_text) for r in linked)
            )
        _write_balances(cur, plan, now)
        outgoing = [(outbox_topic, e) for e in plan.ledger_events]
        outgoing += [(gateway_topic, r) for r in plan.gateway_requests]
        outgoing += [(shard_credits_topic, c) for c in plan.shard_credits]
        if outgoing:
            at = now.isoformat()
            _copy_text(
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


# COPY in text format, each line built with one f-string: psycopg's write_row per value is
# the writer's hottest path. Only free text can hold the characters COPY escapes.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_CHUNK_CHARS = 1 << 20
_NULL = "\\N"


def _free(value: object) -> str:
    return _NULL if value is None else str(value).translate(_ESCAPES)


def _opt(value: object) -> str:
    return _NULL if value is None else str(value)


#: What json.dumps(default=str) wrote before, through orjson: times and dataclasses as their
#: str(), keys that are not strings as their text. Non-ASCII stays UTF-8 (the same JSONB).
_JSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _json(value: object) -> str:
    if type(value) is dict and not value:
        return "{}"
    return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode().translate(_ESCAPES)


def _time_text(now: datetime) -> Callable[[datetime], str]:
    """isoformat, each time formatted once per batch: the batch's own time is on most rows,
    and a command's request time is on its transaction row and its INITIATED event."""
    texts = {now: now.isoformat()}

    def text(value: datetime) -> str:
        found = texts.get(value)
        if found is None:
            found = texts[value] = value.isoformat()
        return found

    return text


def _tx_line(r: tuple, t: Callable[[datetime], str]) -> str:
    return (
        f"{r[0]}\t{r[1]}\t{r[2]}\t{_opt(r[3])}\t{_opt(r[4])}\t{_free(r[5])}\t{r[6]}\t{r[7]}\t"
        f"{r[8]}\t{r[9]}\t{_free(r[10])}\t{_json(r[11])}\t{t(r[12])}\t"
        f"{t(r[13])}\t{_NULL if r[14] is None else t(r[14])}\t{_free(r[15])}\t"
        f"{_free(r[16])}\t{_free(r[17])}\t{_opt(r[18])}\n"
    )


def _json_memo() -> Callable[[dict], str]:
    """``_json`` of dicts of strings, each distinct one written once per batch: a transfer's
    three events carry the same ``{"client_id": ...}``. Only strings: 1 and True, or
    Decimal("1.0") and Decimal("1.00"), are equal keys with different JSON."""
    texts: dict[tuple, str] = {}

    def text(value: dict) -> str:
        if type(value) is not dict or set(map(type, value.values())) - {str}:
            return _json(value)
        key = tuple(value.items())
        found = texts.get(key)
        if found is None:
            found = texts[key] = _json(value)
        return found

    return text


def _event_line(r: tuple, t: Callable[[datetime], str], json_text: Callable[[dict], str]) -> str:
    return (
        f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{json_text(r[4])}\t{_opt(r[5])}\t{_free(r[6])}\t"
        f"{t(r[7])}\n"
    )


def _entry_line(r: tuple, t: Callable[[datetime], str]) -> str:
    return (
        f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4]}\t{r[5]}\t{t(r[6])}\t{r[7]}\t"
        f"\\\\x{r[8].hex()}\t\\\\x{r[9].hex()}\n"
    )


def _numeric_array(values: Iterable[Decimal]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _copy_text(cur: psycopg.Cursor, table: str, columns: str, lines: Iterable[str]) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        chunk: list[str] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= _COPY_CHUNK_CHARS:
                copy.write("".join(chunk).encode())
                chunk, size = [], 0
        if chunk:
            copy.write("".join(chunk).encode())


def _write_balances(cur: psycopg.Cursor, plan: BatchPlan, now: datetime) -> None:
    """The changed balances, each UPDATE matching only the row as the batch read it: a
    balance another writer changed meanwhile matches nothing, the row count falls short,
    and the batch rolls back (``LedgerInvariantError``) instead of losing that update."""
    changed = [plan.accounts[w] for w in plan.changed]
    read = [plan.loaded.get(a.wallet_id) for a in changed]
    if None in read:
        raise LedgerInvariantError("the batch changed a balance it never loaded")
    customers = [(a, r) for a, r in zip(changed, read, strict=True) if not a.is_system]
    systems = [(a, r) for a, r in zip(changed, read, strict=True) if a.is_system]
    if customers:
        cur.execute(
            """UPDATE wallet_balances b
                  SET available_balance = v.available, reserved_balance = v.reserved,
                      last_updated_at = %s, version = b.version + 1
                 FROM unnest(%s::uuid[], %s::numeric[], %s::numeric[], %s::numeric[],
                             %s::numeric[]) AS v(wallet_id, available, reserved,
                                                 read_available, read_reserved)
                WHERE b.wallet_id = v.wallet_id AND b.available_balance = v.read_available
                  AND b.reserved_balance = v.read_reserved""",
            (
                now,
                uuid_array(a.wallet_id for a, _r in customers),
                _numeric_array(a.available for a, _r in customers),
                _numeric_array(a.reserved for a, _r in customers),
                _numeric_array(r.available for _a, r in customers),  # type: ignore[union-attr]
                _numeric_array(r.reserved for _a, r in customers),  # type: ignore[union-attr]
            ),
        )
        _check_rows(cur, len(customers), "wallet balances updated as read")
    if systems:
        cur.execute(
            """UPDATE system_balances s SET balance = v.balance, last_updated_at = %s
                 FROM unnest(%s::uuid[], %s::numeric[], %s::numeric[])
                      AS v(wallet_id, balance, read_balance)
                WHERE s.wallet_id = v.wallet_id AND s.balance = v.read_balance""",
            (
                now,
                uuid_array(a.wallet_id for a, _r in systems),
                _numeric_array(a.available for a, _r in systems),
                _numeric_array(r.available for _a, r in systems),  # type: ignore[union-attr]
            ),
        )
        _check_rows(cur, len(systems), "system balances updated as read")


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

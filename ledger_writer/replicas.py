"""A shard's copies of the directory's wallets: the foreign keys of a shard's rows name
wallets the API created in the directory database (the stack's), so a shard's writer
copies each wallet (and a stand-in of its user) before it writes rows naming it, and
reads every wallet's shard and status from the directory at each batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import psycopg

from ledger_writer.planning import Account


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

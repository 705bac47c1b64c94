"""The hash chain over ledger entries: pure."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from ledger_writer import chain

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def entry(amount: str = "12.5", balance_after: str = "87.5") -> tuple:
    return (
        uuid.UUID(int=1),
        uuid.UUID(int=2),
        uuid.UUID(int=3),
        "DEBIT",
        Decimal(amount),
        Decimal(balance_after),
        AT,
    )


def test_canonical_text_is_the_sql_backfills() -> None:
    text = chain.canonical(7, entry()).decode()
    assert text == (
        "7|00000000-0000-0000-0000-000000000001|00000000-0000-0000-0000-000000000002|"
        "00000000-0000-0000-0000-000000000003|DEBIT|12.5000|87.5000|1767323045678901"
    )


def test_link_numbers_and_chains_each_entry() -> None:
    rows = list(chain.link(41, b"\x01" * 32, [entry(), entry("1"), entry("2")]))
    assert [r[7] for r in rows] == [42, 43, 44]
    assert rows[0][8] == b"\x01" * 32
    assert rows[1][8] == rows[0][9] and rows[2][8] == rows[1][9]
    expected = hashlib.sha256(b"\x01" * 32 + chain.canonical(42, entry())).digest()
    assert rows[0][9] == expected


def test_any_change_changes_the_hash() -> None:
    base = chain.entry_hash(chain.GENESIS, 1, entry())
    assert chain.entry_hash(chain.GENESIS, 1, entry("12.5001")) != base
    assert chain.entry_hash(chain.GENESIS, 1, entry(balance_after="87.4")) != base
    assert chain.entry_hash(chain.GENESIS, 2, entry()) != base
    assert chain.entry_hash(b"\x02" * 32, 1, entry()) != base
    assert chain.entry_hash(chain.GENESIS, 1, entry("12.5000")) == base  # same value

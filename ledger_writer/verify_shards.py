"""``walletpipe ledger verify`` over N shards: every shard on its own (``verify.verify``),
then the shards together.

Between shards money moves through clearing accounts: the payer's shard credits its account
for the payee's shard (the "sent" side), the payee's shard debits its account for the
payer's shard (the "received" side), both under the transaction's id. So, per ordered pair
of shards and currency, every received credit must match a sent one of the same amount,
what was sent and not yet received is in flight, and the pair's two clearing accounts
together hold exactly what is in flight (zero when nothing is). Sent and received are
walked in transaction-id order from server-side cursors: memory stays bounded however many
transfers crossed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import psycopg

from domain.money import CURRENCY_EXPONENTS
from domain.shards import ShardMap, clearing_wallet_id
from ledger_writer.rows import Row
from ledger_writer.verify import SAMPLE_MAX, CheckResult, verify

#: Rows fetched per round trip when walking the clearing entries.
FETCH_ROWS = 10_000
#: Received-but-not-sent suspects re-read from the sender (its snapshot may predate them).
SUSPECTS_MAX = 100


@dataclass(frozen=True)
class InFlight:
    from_shard: int
    to_shard: int
    currency_code: str
    count: int
    amount: Decimal


@dataclass(frozen=True)
class ShardsReport:
    shards: list[list[CheckResult]]
    overall: list[CheckResult]
    in_flight: list[InFlight]

    @property
    def passed(self) -> bool:
        checks = [*self.overall, *(r for shard in self.shards for r in shard)]
        return all(r.passed for r in checks)


def verify_shards(urls: list[str]) -> ShardsReport:
    """Each shard's checks, then the cross-shard ones (needs two or more shards)."""
    shards = ShardMap(len(urls))
    per_shard = [verify(url) for url in urls]
    totals: dict[str, Decimal] = {}
    for url in urls:
        with psycopg.connect(url) as conn:
            for currency, total in _balance_totals(conn):
                totals[currency] = totals.get(currency, Decimal(0)) + total
    unbalanced = [(c, t) for c, t in sorted(totals.items()) if t != 0]
    mismatches: list[Row] = []
    not_netting: list[Row] = []
    in_flight: list[InFlight] = []
    for a in range(shards.count):
        for b in range(a + 1, shards.count):
            pair = _pair(urls, a, b)
            mismatches.extend(pair.mismatches)
            in_flight.extend(f for f in pair.in_flight if f.count or f.amount)
            not_netting.extend(pair.not_netting)
    overall = [
        CheckResult("all shards together sum to zero per currency", unbalanced),
        CheckResult(
            "every cross-shard credit matches what its payer's shard sent",
            mismatches[:SAMPLE_MAX],
        ),
        CheckResult(
            "each shard pair's clearing accounts net to what is in flight",
            not_netting[:SAMPLE_MAX],
        ),
    ]
    return ShardsReport(per_shard, overall, in_flight)


@dataclass(frozen=True)
class _Pair:
    mismatches: list[Row]
    in_flight: list[InFlight]
    not_netting: list[Row]


def _pair(urls: list[str], a: int, b: int) -> _Pair:
    """Both directions between shards ``a`` and ``b``, each shard read in one snapshot.

    Per shard the clearing account equals its entries (checked per shard), so the pair's
    two accounts net to (sent - received) both ways, computed from the same snapshots:
    exact even beside live writers. A received credit the sender's snapshot lacks (sent
    after it was taken) is re-read fresh before it is reported."""
    mismatches: list[Row] = []
    flights: list[InFlight] = []
    not_netting: list[Row] = []
    with psycopg.connect(urls[a]) as conn_a, psycopg.connect(urls[b]) as conn_b:
        conns = {a: conn_a, b: conn_b}
        with conn_b.transaction(), conn_a.transaction():
            # A snapshot starts at a transaction's first query: b's first, so whatever b
            # received from a, a's (later) snapshot has sent.
            for conn in (conn_b, conn_a):
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                conn.execute("SELECT 1")
            for currency in CURRENCY_EXPONENTS:
                net = _clearing_balance(conn_a, clearing_wallet_id(a, b, currency))
                net += _clearing_balance(conn_b, clearing_wallet_id(b, a, currency))
                flying = Decimal(0)
                for sender, receiver in ((a, b), (b, a)):
                    sent = _legs(
                        conns[sender], clearing_wallet_id(sender, receiver, currency), "CREDIT"
                    )
                    received = _legs(
                        conns[receiver], clearing_wallet_id(receiver, sender, currency), "DEBIT"
                    )
                    count, amount, bad = _merge(sent, received)
                    flying += amount
                    flights.append(InFlight(sender, receiver, currency, count, amount))
                    mismatches.extend(_confirmed(urls[sender], sender, receiver, currency, bad))
                if net != flying:
                    not_netting.append((f"shards {a} and {b}", currency, net, flying))
    return _Pair(mismatches, flights, not_netting)


def _clearing_balance(conn: psycopg.Connection, wallet_id: uuid.UUID) -> Decimal:
    row = conn.execute(
        "SELECT balance FROM system_balances WHERE wallet_id = %s", (wallet_id,)
    ).fetchone()
    return Decimal(0) if row is None else row[0]


def _legs(
    conn: psycopg.Connection, clearing: uuid.UUID, entry_type: str
) -> Iterator[tuple[uuid.UUID, Decimal]]:
    """(transaction id, amount) of one side's clearing entries, in transaction-id order."""
    with conn.cursor(name=f"legs_{entry_type.lower()}") as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(
            """SELECT transaction_id, sum(amount) FROM ledger_entries
                WHERE wallet_id = %s AND entry_type = %s
                GROUP BY transaction_id ORDER BY transaction_id""",
            (clearing, entry_type),
        )
        yield from cur


def _merge(
    sent: Iterator[tuple[uuid.UUID, Decimal]], received: Iterator[tuple[uuid.UUID, Decimal]]
) -> tuple[int, Decimal, list[Row]]:
    """Walk both sides in id order: (count and amount in flight, received-side offenders)."""
    count, amount = 0, Decimal(0)
    bad: list[Row] = []
    s, r = next(sent, None), next(received, None)
    while s is not None or r is not None:
        if r is None or (s is not None and s[0] < r[0]):
            count, amount = count + 1, amount + s[1]  # type: ignore[index]
            s = next(sent, None)
        elif s is None or r[0] < s[0]:
            # Received, not sent in this snapshot: netted against the in-flight amount so
            # that it equals sent - received; re-read before it is called an offender.
            amount -= r[1]
            if len(bad) < SUSPECTS_MAX:
                bad.append((r[0], r[1], None))
            r = next(received, None)
        else:
            amount += s[1] - r[1]
            if s[1] != r[1] and len(bad) < SUSPECTS_MAX:
                bad.append((r[0], r[1], s[1]))
            s, r = next(sent, None), next(received, None)
    return count, amount, bad


def _confirmed(
    sender_url: str, sender: int, receiver: int, currency: str, suspects: list[Row]
) -> list[Row]:
    """Suspects that a fresh read of the sender still does not explain."""
    if not suspects:
        return []
    clearing = clearing_wallet_id(sender, receiver, currency)
    with psycopg.connect(sender_url) as conn:
        sent: dict[uuid.UUID, Decimal] = dict(
            conn.execute(
                """SELECT transaction_id, sum(amount) FROM ledger_entries
                    WHERE wallet_id = %s AND entry_type = 'CREDIT' AND transaction_id = ANY(%s)
                    GROUP BY transaction_id""",
                (clearing, [s[0] for s in suspects]),
            ).fetchall()
        )
    return [
        (
            f"shard {sender} -> {receiver}",
            transaction_id,
            currency,
            received,
            sent.get(transaction_id),
        )
        for transaction_id, received, _seen in suspects
        if sent.get(transaction_id) != received
    ][:SAMPLE_MAX]


def _balance_totals(conn: psycopg.Connection) -> list[tuple[str, Decimal]]:
    return conn.execute(
        """SELECT currency_code, sum(total) FROM (
               SELECT w.currency_code, b.available_balance + b.reserved_balance AS total
                 FROM wallet_balances b JOIN wallets w USING (wallet_id)
               UNION ALL SELECT currency_code, balance FROM system_balances) t
            GROUP BY currency_code"""
    ).fetchall()

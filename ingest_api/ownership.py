"""Whose user or wallet a caller may see or change: the checks every customer route shares.

A user belongs to the API client that created it (``api_client_users``); a wallet to its
user's client, and a client a wallet was granted to may read it too (``api_client_wallet_grants``).
Compliance and admin keys act on every customer (``oversees``). Unknown ids answer 404,
another client's 403, with a code that names the resource.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from domain.access import KeyGrant, Role
from ingest_api.exceptions import Forbidden, NotFound

#: Roles that act on every customer, whoever onboarded it.
OVERSIGHT_ROLES = frozenset({Role.COMPLIANCE, Role.ADMIN})


def oversees(client: KeyGrant) -> bool:
    return not client.roles.isdisjoint(OVERSIGHT_ROLES)


async def owned_user(cur: Any, client: KeyGrant, user_id: uuid.UUID, lock: bool = False) -> None:
    """Raise unless ``client`` may act for ``user_id`` (``lock``: hold the user row until the
    caller's transaction ends, so a user's changes are made one at a time)."""
    await cur.execute(
        "SELECT EXISTS (SELECT 1 FROM api_client_users"
        " WHERE client_id = %s AND user_id = u.user_id) FROM users u WHERE u.user_id = %s"
        + (" FOR UPDATE OF u" if lock else ""),
        (client.client_id, user_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"user {user_id} does not exist", code="USER_NOT_FOUND")
    owns = row[0] if isinstance(row, tuple) else next(iter(row.values()))
    if not owns and not oversees(client):
        raise Forbidden(f"user {user_id} belongs to another client", code="USER_FORBIDDEN")


@dataclass(frozen=True)
class WalletRow:
    wallet_id: uuid.UUID
    user_id: uuid.UUID
    currency_code: str
    status: str
    version: int


async def visible_wallet(
    cur: Any, client: KeyGrant, wallet_id: uuid.UUID, *, owner_only: bool, lock: bool = False
) -> WalletRow:
    """The wallet, if ``client`` owns it (or, unless ``owner_only``, was granted it), or
    oversees every customer."""
    await cur.execute(
        """SELECT w.wallet_id, w.user_id, w.currency_code, w.status, w.version,
                  EXISTS (SELECT 1 FROM api_client_users cu
                           WHERE cu.client_id = %(client)s AND cu.user_id = w.user_id) AS owns,
                  EXISTS (SELECT 1 FROM api_client_wallet_grants g
                           WHERE g.client_id = %(client)s AND g.wallet_id = w.wallet_id) AS granted
             FROM wallets w WHERE w.wallet_id = %(wallet)s AND w.wallet_type <> 'SYSTEM'"""
        + (" FOR UPDATE OF w" if lock else ""),
        {"client": client.client_id, "wallet": wallet_id},
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"wallet {wallet_id} does not exist", code="WALLET_NOT_FOUND")
    values = tuple(row.values()) if isinstance(row, dict) else tuple(row)
    owns, granted = values[5], values[6]
    if not (owns or (granted and not owner_only) or oversees(client)):
        raise Forbidden(f"wallet {wallet_id} belongs to another client", code="WALLET_FORBIDDEN")
    return WalletRow(*values[:5])

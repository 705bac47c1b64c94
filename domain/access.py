"""Who may call what: API key roles, what a key is once looked up, and a cache of keys
that every service trusts for at most a bounded time.

Pure: no I/O. The services look keys up in PostgreSQL (``api_keys`` joined to
``api_clients``) and keep them in a ``KeyCache``; a key change anywhere bumps one revision
number in the same transaction (``api_key_revision``), and each service reads that number a
few times a second. A cached key is used only while the last revision check is recent
(``trust_ms``, at most a second), so a revoked key stops working in every process within
that time, and an expiry is checked on every request against the clock.

Keys are random (``wp_`` + 32 bytes, URL-safe); the database stores their sha256 only, so
a key is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from domain.exceptions import AccessError

KEY_PREFIX = "wp_"
#: Characters of a key kept in clear beside its hash, to tell keys apart in listings.
KEY_DISPLAY_LENGTH = 10
#: Longer keys are refused before hashing: no key we issue is longer.
API_KEY_LENGTH_MAX = 200
#: The longest a service may trust a cached key without a fresh revision check.
TRUST_MS_MAX = 1_000


class Role(StrEnum):
    """What a key is for. A key carries one or more roles; an endpoint names those it
    allows (ingest_api/deps.py, analytics/auth.py)."""

    CUSTOMER_APP = "customer_app"  # a mobile or web app acting for its own users
    POS = "pos"  # a point-of-sale terminal or a merchant's back office
    PARTNER = "partner"  # a partner (bank, fintech) with users of its own
    ANALYST = "analyst"  # fraud analysts: reviews and analytics reports
    COMPLIANCE = "compliance"  # compliance officers: reviews, analytics and regulatory reports
    REGULATOR = "regulator"  # a regulator: the regulatory reports only
    ADMIN = "admin"  # the operator: keys of every client, reviews, every report


#: Roles that act for users: onboard them, move their money, refund.
TENANT_ROLES = frozenset({Role.CUSTOMER_APP, Role.POS, Role.PARTNER})
#: Roles that create users and wallets and manage their limits (not a POS terminal).
ONBOARDING_ROLES = frozenset({Role.CUSTOMER_APP, Role.PARTNER})
#: Roles that decide transactions held for review.
REVIEW_ROLES = frozenset({Role.ANALYST, Role.COMPLIANCE, Role.ADMIN})
#: Roles that verify customers: read identity documents, approve or reject them.
COMPLIANCE_ROLES = frozenset({Role.COMPLIANCE})
#: Roles that may freeze, unfreeze or close a wallet: its owner's apps, and the operator
#: and compliance (a court order, a suspected account takeover).
WALLET_STATUS_ROLES = ONBOARDING_ROLES | {Role.COMPLIANCE, Role.ADMIN}
EVERY_ROLE = frozenset(Role)

#: The roles the API clients of the first schema had (``api_clients.role``), for
#: ``parse_roles`` of old names; migration 0045 maps stored keys the same way.
LEGACY_ROLES: dict[str, frozenset[Role]] = {
    "client": TENANT_ROLES,
    "analyst": frozenset({Role.ANALYST}),
    "regulator": frozenset({Role.REGULATOR}),
    "admin": frozenset({Role.ADMIN}),
}


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    """Role names (and the first schema's ``client``) to roles; at least one."""
    roles: set[Role] = set()
    for name in names:
        name = name.strip()
        if name in LEGACY_ROLES:
            roles |= LEGACY_ROLES[name]
            continue
        try:
            roles.add(Role(name))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise AccessError(
                f"unknown role {name!r}; roles: {known}", code="UNKNOWN_ROLE"
            ) from None
    if not roles:
        raise AccessError("a key needs at least one role", code="UNKNOWN_ROLE")
    return frozenset(roles)


def new_api_key() -> str:
    """A fresh key; 256 random bits, so an unsalted sha256 is a safe way to store it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """How ``api_keys.key_hash`` stores a key: sha256 hex, so the database never holds it."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def display_prefix(api_key: str) -> str:
    return api_key[:KEY_DISPLAY_LENGTH]


@dataclass(frozen=True)
class KeyGrant:
    """An API key as a service sees it after looking it up: whose it is, what it may do,
    until when, and how fast. ``rate_limit_*`` of the key are None when only the client's
    limit applies."""

    key_id: uuid.UUID
    client_id: uuid.UUID
    client_name: str
    roles: frozenset[Role]
    #: Seconds since the epoch, or None: never expires.
    expires_at_s: float | None
    client_rate_per_second: int
    client_burst: int
    key_rate_per_second: int | None = None
    key_burst: int | None = None

    def expired(self, now_s: float) -> bool:
        return self.expires_at_s is not None and now_s >= self.expires_at_s

    def allows(self, allowed: frozenset[Role]) -> bool:
        return not self.roles.isdisjoint(allowed)

    @property
    def expires_at(self) -> datetime | None:
        return None if self.expires_at_s is None else datetime.fromtimestamp(self.expires_at_s, UTC)


def burst_of(rate_per_second: int, burst: int | None) -> int:
    """A bucket's capacity: as configured, else two seconds' worth."""
    return burst if burst is not None else 2 * rate_per_second


#: Why a key that exists is refused (the ``refusal`` of ``api_key_grants``), for the caller.
REFUSALS = {
    "API_KEY_REVOKED": "this API key was revoked; use another key of your client",
    "API_KEY_EXPIRED": "this API key has expired; rotate keys before they expire",
}


@dataclass(frozen=True)
class KeyLookup:
    """A key as PostgreSQL knows it (a row of the view ``api_key_grants``): its grant, or
    why it is refused (``refusal``, a key of ``REFUSALS``), and the revision it was read
    under (for ``KeyCache.put``)."""

    grant: KeyGrant | None
    refusal: str | None
    revision: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> KeyLookup:
        if row["refusal"] is not None:
            return cls(None, str(row["refusal"]), int(row["revision"]))
        grant = KeyGrant(
            key_id=row["key_id"],
            client_id=row["client_id"],
            client_name=row["client_name"],
            roles=frozenset(Role(r) for r in row["roles"]),
            expires_at_s=row["expires_at_s"],
            client_rate_per_second=row["client_rate_per_second"],
            client_burst=burst_of(row["client_rate_per_second"], row["client_burst"]),
            key_rate_per_second=row["key_rate_per_second"],
            key_burst=row["key_burst"],
        )
        return cls(grant, None, int(row["revision"]))


class KeyCache:
    """Key hash → ``KeyGrant``, bounded (LRU), trusted only while revision checks are fresh.

    ``confirm(revision, checked_at)`` is called by the service's poller with the revision
    it read and the monotonic time it *sent* the query: every change committed before
    that moment is in that revision. A new revision empties the cache. ``get`` returns
    nothing once the last confirmation is older than ``trust_ms`` (the poller stalled or
    PostgreSQL is away): the caller then asks PostgreSQL, which is always right.
    """

    def __init__(self, entries_max: int, trust_ms: int) -> None:
        if not 0 <= trust_ms <= TRUST_MS_MAX:
            raise AccessError(f"a key may be trusted for at most {TRUST_MS_MAX} ms unchecked")
        self._entries: OrderedDict[str, KeyGrant] = OrderedDict()
        self._entries_max = entries_max
        self._trust_s = trust_ms / 1000
        self._revision: int | None = None
        self._confirmed_at = float("-inf")

    @property
    def revision(self) -> int | None:
        return self._revision

    def confirm(self, revision: int, checked_at: float) -> None:
        """``revision`` was current when a query sent at ``checked_at`` read it: the poller's,
        or a key lookup's (the grant view carries it). An older revision than the one held
        (a slow read overtaken by a newer one) confirms nothing."""
        if self._revision is not None and revision < self._revision:
            return
        if revision != self._revision:
            self._entries.clear()
            self._revision = revision
        self._confirmed_at = max(self._confirmed_at, checked_at)

    def trusted(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return now - self._confirmed_at <= self._trust_s

    def get(self, key_hash: str, now: float | None = None) -> KeyGrant | None:
        if not self.trusted(now):
            return None
        grant = self._entries.get(key_hash)
        if grant is not None:
            self._entries.move_to_end(key_hash)
        return grant

    def known(self, key_hash: str) -> bool:
        """Whether ``key_hash`` was a valid key at the last confirmed revision, trusted or
        not: its caller proved it holds a real key, so re-reading it is no guess."""
        return key_hash in self._entries

    def put(self, key_hash: str, grant: KeyGrant, revision: int | None) -> None:
        """Keep ``grant`` if it was read under the current revision (a grant read before
        a change the poller has already seen must not come back)."""
        if revision is None or revision != self._revision:
            return
        self._entries[key_hash] = grant
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self._entries_max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class KeyAction(StrEnum):
    READ = "read"
    ROTATE = "rotate"
    REVOKE = "revoke"


def may_manage(
    caller: KeyGrant, action: KeyAction, client_id: uuid.UUID, key_id: uuid.UUID
) -> bool:
    """Whether ``caller`` may act on key ``key_id`` of client ``client_id``.

    An admin manages every key. A client sees and revokes its own keys (revoking is never
    a risk: a client that fears a key leaked stops it with any of its keys), but a key
    rotates only itself: a rotation makes a key with the old one's roles, and a POS key
    must not mint a partner key of its client. Issuing keys is for admins alone (a leaked
    key must not be able to make keys that outlive its revocation).
    """
    if Role.ADMIN in caller.roles:
        return True
    if client_id != caller.client_id:
        return False
    return action is not KeyAction.ROTATE or key_id == caller.key_id

"""Who may do what: roles, the key cache's bounded trust, key management rules, the refund
route of a reversal, and the roles every ingest route declares (and documents)."""

from __future__ import annotations

import uuid

import pytest
from fastapi.routing import APIRoute

from domain.access import (
    EVERY_ROLE,
    ONBOARDING_ROLES,
    REVIEW_ROLES,
    TENANT_ROLES,
    KeyAction,
    KeyCache,
    KeyGrant,
    KeyLookup,
    Role,
    hash_api_key,
    may_manage,
    new_api_key,
    parse_roles,
)
from domain.exceptions import AccessError
from domain.reversals import RefundRoute, refund_route
from ingest_api.app import create_app
from ingest_api.deps import route_roles
from ingest_api.settings import IngestSettings

CLIENT, OTHER = uuid.uuid4(), uuid.uuid4()


def grant(*roles: Role, client: uuid.UUID = CLIENT, expires_at_s: float | None = None) -> KeyGrant:
    return KeyGrant(uuid.uuid4(), client, "c", frozenset(roles), expires_at_s, 10, 20)


# --- roles and keys ------------------------------------------------------------------------


def test_roles_parse_and_the_first_schemas_client_means_the_tenant_roles() -> None:
    assert parse_roles(["pos", " analyst"]) == {Role.POS, Role.ANALYST}
    assert parse_roles(["client"]) == TENANT_ROLES
    with pytest.raises(AccessError) as caught:
        parse_roles(["superuser"])
    assert caught.value.code == "UNKNOWN_ROLE"
    with pytest.raises(AccessError):
        parse_roles([])


def test_keys_are_random_and_stored_as_sha256() -> None:
    key = new_api_key()
    assert key.startswith("wp_") and len(key) >= 40 and key != new_api_key()
    assert len(hash_api_key(key)) == 64 and key not in hash_api_key(key)


def test_reporting_and_reviewing_roles_move_no_money() -> None:
    for role in (Role.ANALYST, Role.REGULATOR, Role.COMPLIANCE, Role.ADMIN):
        assert role not in TENANT_ROLES and role not in ONBOARDING_ROLES
    assert Role.POS not in ONBOARDING_ROLES  # a terminal does not onboard users
    assert Role.REGULATOR not in REVIEW_ROLES


def test_expiry_is_by_the_clock() -> None:
    assert not grant(Role.POS, expires_at_s=100.0).expired(99.9)
    assert grant(Role.POS, expires_at_s=100.0).expired(100.0)
    assert not grant(Role.POS).expired(1e12)


def test_a_lookup_row_becomes_a_grant_or_a_refusal() -> None:
    row = {
        "key_id": uuid.uuid4(),
        "client_id": CLIENT,
        "client_name": "shop",
        "roles": ["pos", "customer_app"],
        "expires_at_s": None,
        "client_rate_per_second": 50,
        "client_burst": None,
        "key_rate_per_second": 5,
        "key_burst": None,
        "refusal": None,
        "revision": 7,
    }
    found = KeyLookup.from_row(row)
    assert found.grant is not None and found.revision == 7
    assert found.grant.roles == {Role.POS, Role.CUSTOMER_APP}
    assert found.grant.client_burst == 100  # two seconds' worth when not set
    refused = KeyLookup.from_row({**row, "refusal": "API_KEY_REVOKED"})
    assert (refused.grant, refused.refusal) == (None, "API_KEY_REVOKED")


# --- the cache trusts its keys only while the revision is freshly confirmed -------------------


def test_cache_serves_only_within_the_trust_window() -> None:
    cache = KeyCache(entries_max=10, trust_ms=900)
    cache.confirm(1, checked_at=100.0)
    cache.put("h", grant(Role.POS), revision=1)
    assert cache.get("h", now=100.5) is not None
    assert cache.get("h", now=100.875) is not None
    assert cache.get("h", now=100.91) is None  # the poller is late: ask PostgreSQL
    cache.confirm(1, checked_at=101.0)
    assert cache.get("h", now=101.5) is not None  # same revision: kept


def test_an_untrusted_entry_is_still_known_as_a_real_key() -> None:
    """A late poller makes the cache ask PostgreSQL, but the key is no guess: its lookup
    does not spend the address's budget for unknown keys (ingest_api.authentication)."""
    cache = KeyCache(entries_max=10, trust_ms=900)
    cache.confirm(1, checked_at=100.0)
    cache.put("h", grant(Role.POS), revision=1)
    assert cache.get("h", now=102.0) is None
    assert cache.known("h") and not cache.known("other")
    cache.confirm(2, checked_at=102.5)  # any change of keys: nothing is known any more
    assert not cache.known("h")


def test_an_older_revision_confirms_nothing() -> None:
    cache = KeyCache(entries_max=10, trust_ms=900)
    cache.confirm(5, checked_at=10.0)
    cache.put("h", grant(Role.POS), revision=5)
    cache.confirm(4, checked_at=10.5)  # a lookup sent before the poller's newer read
    assert cache.revision == 5 and cache.get("h", now=10.8) is not None
    assert cache.get("h", now=10.95) is None  # trust still runs from the read of 5


def test_a_new_revision_empties_the_cache() -> None:
    cache = KeyCache(entries_max=10, trust_ms=900)
    cache.confirm(1, checked_at=0.0)
    cache.put("h", grant(Role.POS), revision=1)
    cache.confirm(2, checked_at=0.2)
    assert cache.get("h", now=0.3) is None and len(cache) == 0


def test_a_grant_read_under_another_revision_is_not_kept() -> None:
    cache = KeyCache(entries_max=10, trust_ms=900)
    cache.confirm(2, checked_at=0.0)
    cache.put("old", grant(Role.POS), revision=1)  # read before a change the cache has seen
    cache.put("ahead", grant(Role.POS), revision=3)  # read after one it has not seen yet
    assert cache.get("old", now=0.1) is None and cache.get("ahead", now=0.1) is None


def test_cache_is_bounded_and_trust_is_capped_at_a_second() -> None:
    cache = KeyCache(entries_max=2, trust_ms=500)
    cache.confirm(1, checked_at=0.0)
    for name in "abc":
        cache.put(name, grant(Role.POS), revision=1)
    assert len(cache) == 2 and cache.get("a", now=0.1) is None
    with pytest.raises(AccessError):
        KeyCache(entries_max=2, trust_ms=1_001)


def test_a_confirmation_older_than_the_last_does_not_extend_trust() -> None:
    cache = KeyCache(entries_max=2, trust_ms=500)
    cache.confirm(1, checked_at=10.0)
    cache.confirm(1, checked_at=5.0)  # a slow read that was sent earlier
    cache.put("h", grant(Role.POS), revision=1)
    assert cache.get("h", now=10.4) is not None and cache.get("h", now=10.6) is None


# --- managing keys ---------------------------------------------------------------------------


def test_who_manages_which_key() -> None:
    pos = grant(Role.POS)
    sibling, other_clients = uuid.uuid4(), uuid.uuid4()
    assert may_manage(pos, KeyAction.READ, CLIENT, sibling)
    assert may_manage(pos, KeyAction.REVOKE, CLIENT, sibling)
    assert may_manage(pos, KeyAction.ROTATE, CLIENT, pos.key_id)  # itself
    assert not may_manage(pos, KeyAction.ROTATE, CLIENT, sibling)  # no minting siblings
    for action in KeyAction:
        assert not may_manage(pos, action, OTHER, other_clients)
        assert may_manage(grant(Role.ADMIN), action, OTHER, other_clients)


# --- refunds: only the wallet that pays back moves its money -----------------------------------

PAYEE_WALLET = uuid.uuid4()


@pytest.mark.parametrize(
    ("source", "controls_source", "controls_destination", "submitted", "route"),
    [
        # A transfer A → B reversed is B → A: B's client reverses ...
        (PAYEE_WALLET, True, False, False, RefundRoute.REVERSE),
        # ... A's client (which submitted it, or holds A) only requests ...
        (PAYEE_WALLET, False, True, True, RefundRoute.REQUEST),
        (PAYEE_WALLET, False, True, False, RefundRoute.REQUEST),
        (PAYEE_WALLET, False, False, True, RefundRoute.REQUEST),
        # ... a client holding both wallets reverses; a stranger does nothing.
        (PAYEE_WALLET, True, True, True, RefundRoute.REVERSE),
        (PAYEE_WALLET, False, False, False, RefundRoute.NONE),
        # Money back from outside (a payment out, a withdrawal): the payer's wallet's client.
        (None, False, True, True, RefundRoute.REVERSE),
        (None, False, False, True, RefundRoute.NONE),
        (None, False, False, False, RefundRoute.NONE),
    ],
)
def test_refund_route(
    source: uuid.UUID | None,
    controls_source: bool,
    controls_destination: bool,
    submitted: bool,
    route: RefundRoute,
) -> None:
    assert refund_route(source, controls_source, controls_destination, submitted) is route


# --- every route declares its roles, and the OpenAPI says them ---------------------------------

EXPECTED = {
    ("POST", "/v1/users"): ONBOARDING_ROLES,
    ("POST", "/v1/wallets"): ONBOARDING_ROLES,
    ("POST", "/v1/limits"): ONBOARDING_ROLES,
    ("POST", "/v1/transactions"): TENANT_ROLES,
    ("GET", "/v1/transactions/{transaction_id}"): TENANT_ROLES,
    ("POST", "/v1/transactions/{transaction_id}/reversals"): TENANT_ROLES,
    ("POST", "/v1/transactions/{transaction_id}/refund-requests"): TENANT_ROLES,
    ("POST", "/v1/refund-requests/{refund_request_id}/grant"): TENANT_ROLES,
    ("POST", "/v1/wallets/{wallet_id}/grants"): TENANT_ROLES,
    ("GET", "/v1/reviews"): REVIEW_ROLES,
    ("POST", "/v1/keys"): frozenset({Role.ADMIN}),
    ("GET", "/v1/keys"): EVERY_ROLE,
    ("GET", "/v1/me"): EVERY_ROLE,
    ("POST", "/v1/webhooks"): TENANT_ROLES | {Role.ADMIN},
    ("GET", "/v1/webhooks"): TENANT_ROLES | {Role.ADMIN},
    ("DELETE", "/v1/webhooks/{subscription_id}"): TENANT_ROLES | {Role.ADMIN},
    ("POST", "/v1/webhooks/{subscription_id}/redeliver"): TENANT_ROLES | {Role.ADMIN},
}


@pytest.fixture(scope="module")
def spec() -> dict:
    """The OpenAPI of the ingest API; each route's "Roles:" line is written from the very
    ``RoleGate`` its caller parameter depends on (ingest_api/deps.py), so the text is the
    check."""
    app = create_app(IngestSettings(DATABASE_URL="postgresql://unused/x", KAFKA_BOOTSTRAP="x:1"))
    return app.openapi()


def test_every_v1_route_declares_roles(spec: dict) -> None:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/"):
                assert "**Roles:**" in operation.get("description", ""), (method, path)
                assert operation.get("security") == [{"APIKeyHeader": []}], (method, path)


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_the_routes_allow_the_roles_they_should(spec: dict, method: str, path: str) -> None:
    expected = EXPECTED[(method, path)]
    named = "every role" if expected == EVERY_ROLE else ", ".join(sorted(expected))
    description = spec["paths"][path][method.lower()]["description"]
    assert description.endswith(f"**Roles:** {named}."), description


def test_role_gates_are_found_on_the_app_routes() -> None:
    app = create_app(IngestSettings(DATABASE_URL="postgresql://unused/x", KAFKA_BOOTSTRAP="x:1"))
    found = {
        (method, route.path): route_roles(route)
        for route in app.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert found[("POST", "/v1/users")] == ONBOARDING_ROLES
    assert found[("GET", "/health")] is None

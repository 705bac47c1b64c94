"""The FastAPI dependencies every router shares: the service, and the caller with its roles.

Each route names who may call it by the type of its caller parameter, declared here once:

==============  ==============================================  ============================
type            roles                                           for
==============  ==============================================  ============================
``Onboarder``   customer_app, partner                           users, wallets, limits
``Tenant``      customer_app, pos, partner                      money, balances, refunds
``Reviewer``    analyst, compliance, admin                      held transactions
``Subscriber``  customer_app, pos, partner, admin               webhooks
``Admin``       admin                                           issuing keys
``Caller``      every role                                      ``/v1/me``, own keys
==============  ==============================================  ============================

A key without one of the route's roles gets 403 ``ROLE_FORBIDDEN`` (``REVIEWER_ONLY`` on
the reviews, as before). ``document_roles`` writes each route's roles into its OpenAPI
description from the same declaration, so the documentation cannot drift from the checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader

from domain.access import (
    EVERY_ROLE,
    ONBOARDING_ROLES,
    REVIEW_ROLES,
    TENANT_ROLES,
    KeyGrant,
    Role,
)
from ingest_api.authentication import Authenticator
from ingest_api.exceptions import Forbidden
from ingest_api.service import IngestService

ROLES_HEADING = "**Roles:**"
#: The X-API-Key header, declared as the OpenAPI security scheme of every /v1 route.
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def service_of(request: Request) -> IngestService:
    return request.app.state.service  # type: ignore[no-any-return]


def authenticator_of(request: Request) -> Authenticator:
    return request.app.state.authenticator  # type: ignore[no-any-return]


class RoleGate:
    """A dependency: authenticate (and rate-limit) the caller, then require a role."""

    def __init__(self, roles: frozenset[Role], forbidden_code: str = "ROLE_FORBIDDEN") -> None:
        self.roles = roles
        self._code = forbidden_code

    async def __call__(
        self, request: Request, api_key: Annotated[str | None, Depends(api_key_header)]
    ) -> KeyGrant:
        address = request.client.host if request.client else "unknown"
        grant = await authenticator_of(request).authenticate(api_key, address)
        if not grant.allows(self.roles):
            raise Forbidden(
                f"this key's roles ({', '.join(sorted(grant.roles))}) may not call this; "
                f"it needs one of: {', '.join(sorted(self.roles))}",
                code=self._code,
            )
        return grant


Caller = Annotated[KeyGrant, Depends(RoleGate(EVERY_ROLE))]
Onboarder = Annotated[KeyGrant, Depends(RoleGate(ONBOARDING_ROLES))]
Tenant = Annotated[KeyGrant, Depends(RoleGate(TENANT_ROLES))]
Reviewer = Annotated[KeyGrant, Depends(RoleGate(REVIEW_ROLES, "REVIEWER_ONLY"))]
Admin = Annotated[KeyGrant, Depends(RoleGate(frozenset({Role.ADMIN})))]
Subscriber = Annotated[KeyGrant, Depends(RoleGate(TENANT_ROLES | {Role.ADMIN}))]


def _gates(dependant: Dependant) -> Iterator[RoleGate]:
    for sub in dependant.dependencies:
        if isinstance(sub.call, RoleGate):
            yield sub.call
        yield from _gates(sub)


def route_roles(route: APIRoute) -> frozenset[Role] | None:
    """The roles a route allows (None: it authenticates nobody, e.g. /health)."""
    gates = list(_gates(route.dependant))
    if not gates:
        return None
    return frozenset.intersection(*(gate.roles for gate in gates))


def document_roles(router: APIRouter) -> APIRouter:
    """Append "Roles: ..." to the OpenAPI description of every authenticated route of
    ``router`` (call it on each router before it is included, and on ``app.router``)."""
    for route in router.routes:
        if not isinstance(route, APIRoute) or ROLES_HEADING in (route.description or ""):
            continue
        roles = route_roles(route)
        if roles is None:
            continue
        names = "every role" if roles == EVERY_ROLE else ", ".join(sorted(roles))
        route.description = f"{route.description}\n\n{ROLES_HEADING} {names}.".strip()
    return router

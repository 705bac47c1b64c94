"""``/v1/users/{id}``: a user's profile, addresses and wallets, for the client that
onboarded the user (roles of ``Onboarder``). Each change is one PostgreSQL transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi import APIRouter, Request
from psycopg.rows import dict_row

from domain.inputs import CanonicalUuid
from ingest_api.customer_schemas import (
    AddressOut,
    CreateAddress,
    UpdateUser,
    UserDetailOut,
    UserWalletOut,
)
from ingest_api.deps import Onboarder, service_of
from ingest_api.exceptions import Conflict, NotFound, Unprocessable
from ingest_api.ownership import owned_user

router = APIRouter(prefix="/v1/users", tags=["users"])

#: Addresses one user may keep.
ADDRESSES_PER_USER_MAX = 20
#: Wallets listed for one user (the newest first past it).
WALLETS_LISTED_MAX = 1000
_USER_COLUMNS = """user_id, email, phone_number, first_name, last_name, date_of_birth, status,
    kyc_status, created_at, updated_at"""
_ADDRESS_COLUMNS = """address_id, user_id, address_type, address_line1, address_line2, city,
    state, postal_code, country, is_verified, is_primary, created_at"""


def _pool(request: Request) -> Any:
    return service_of(request).repository.pool


@router.get("/{user_id}", response_model=UserDetailOut)
async def get_user(user_id: CanonicalUuid, client: Onboarder, request: Request) -> dict:
    """The user's profile (never its password hash). 404 USER_NOT_FOUND, 403 USER_FORBIDDEN."""
    async with _pool(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id)
        await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = %s", (user_id,))
        return await cur.fetchone()  # type: ignore[return-value]


@router.patch("/{user_id}", response_model=UserDetailOut)
async def update_user(
    user_id: CanonicalUuid, body: UpdateUser, client: Onboarder, request: Request
) -> dict:
    """Change the fields sent. 409 USER_EXISTS: the email or phone number is another user's;
    422 NOTHING_TO_CHANGE: no field sent."""
    fields = body.model_dump(exclude_none=True)
    if not fields:
        raise Unprocessable("send at least one field to change", code="NOTHING_TO_CHANGE")
    assignments = ", ".join(f"{name} = %({name})s" for name in fields)
    try:
        async with _pool(request).connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await owned_user(cur, client, user_id, lock=True)
            await cur.execute(
                f"""UPDATE users SET {assignments}, updated_at = %(now)s, version = version + 1
                     WHERE user_id = %(user_id)s RETURNING {_USER_COLUMNS}""",
                {**fields, "now": datetime.now(UTC), "user_id": user_id},
            )
            return await cur.fetchone()  # type: ignore[return-value]
    except psycopg.errors.UniqueViolation:
        raise Conflict("another user has this email or phone number", code="USER_EXISTS") from None


@router.get("/{user_id}/wallets", response_model=list[UserWalletOut])
async def user_wallets(user_id: CanonicalUuid, client: Onboarder, request: Request) -> list:
    """The user's wallets, the newest first (at most 1,000)."""
    async with _pool(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id)
        await cur.execute(
            """SELECT wallet_id, wallet_type, currency_code, status, created_at FROM wallets
                WHERE user_id = %s AND wallet_type <> 'SYSTEM'
                ORDER BY created_at DESC, wallet_id LIMIT %s""",
            (user_id, WALLETS_LISTED_MAX),
        )
        return await cur.fetchall()


@router.post("/{user_id}/addresses", status_code=201, response_model=AddressOut)
async def add_address(
    user_id: CanonicalUuid, body: CreateAddress, client: Onboarder, request: Request
) -> dict:
    """Add an address; ``is_primary`` makes it the one primary address of the user.
    422 TOO_MANY_ADDRESSES past 20."""
    now = datetime.now(UTC)
    async with _pool(request).connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id, lock=True)
        await cur.execute("SELECT count(*) AS n FROM user_addresses WHERE user_id = %s", (user_id,))
        if (await cur.fetchone())["n"] >= ADDRESSES_PER_USER_MAX:  # type: ignore[index]
            raise Unprocessable(
                f"a user keeps at most {ADDRESSES_PER_USER_MAX} addresses; remove one first",
                code="TOO_MANY_ADDRESSES",
            )
        if body.is_primary:
            await _clear_primary(cur, user_id, now)
        await cur.execute(
            f"""INSERT INTO user_addresses (address_id, user_id, address_type, address_line1,
                   address_line2, city, state, postal_code, country, is_primary, created_at,
                   updated_at)
                VALUES (%(address_id)s, %(user_id)s, %(address_type)s, %(address_line1)s,
                   %(address_line2)s, %(city)s, %(state)s, %(postal_code)s, %(country)s,
                   %(is_primary)s, %(now)s, %(now)s)
                RETURNING {_ADDRESS_COLUMNS}""",
            {**body.model_dump(), "address_id": uuid.uuid4(), "user_id": user_id, "now": now},
        )
        return await cur.fetchone()  # type: ignore[return-value]


@router.get("/{user_id}/addresses", response_model=list[AddressOut])
async def list_addresses(user_id: CanonicalUuid, client: Onboarder, request: Request) -> list:
    """The user's addresses, the primary first."""
    async with _pool(request).connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id)
        await cur.execute(
            f"""SELECT {_ADDRESS_COLUMNS} FROM user_addresses WHERE user_id = %s
                 ORDER BY is_primary DESC, created_at""",
            (user_id,),
        )
        return await cur.fetchall()


@router.post("/{user_id}/addresses/{address_id}/primary", response_model=AddressOut)
async def set_primary_address(
    user_id: CanonicalUuid, address_id: CanonicalUuid, client: Onboarder, request: Request
) -> dict:
    """Make this address the user's one primary address. 404 ADDRESS_NOT_FOUND."""
    now = datetime.now(UTC)
    async with _pool(request).connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id, lock=True)
        await _address(cur, user_id, address_id)
        await _clear_primary(cur, user_id, now)
        await cur.execute(
            f"""UPDATE user_addresses SET is_primary = TRUE, updated_at = %s,
                       version = version + 1
                 WHERE address_id = %s RETURNING {_ADDRESS_COLUMNS}""",
            (now, address_id),
        )
        return await cur.fetchone()  # type: ignore[return-value]


@router.delete("/{user_id}/addresses/{address_id}", status_code=204)
async def remove_address(
    user_id: CanonicalUuid, address_id: CanonicalUuid, client: Onboarder, request: Request
) -> None:
    """Remove an address. 404 ADDRESS_NOT_FOUND; 409 ADDRESS_IN_USE: a card's billing
    address (remove the card first)."""
    async with _pool(request).connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id, lock=True)
        await _address(cur, user_id, address_id)
        try:
            await cur.execute("DELETE FROM user_addresses WHERE address_id = %s", (address_id,))
        except psycopg.errors.ForeignKeyViolation:
            raise Conflict(
                f"address {address_id} is a card's billing address", code="ADDRESS_IN_USE"
            ) from None


async def _address(cur: Any, user_id: uuid.UUID, address_id: uuid.UUID) -> None:
    await cur.execute(
        "SELECT 1 FROM user_addresses WHERE address_id = %s AND user_id = %s",
        (address_id, user_id),
    )
    if await cur.fetchone() is None:
        raise NotFound(f"user {user_id} has no address {address_id}", code="ADDRESS_NOT_FOUND")


async def _clear_primary(cur: Any, user_id: uuid.UUID, now: datetime) -> None:
    await cur.execute(
        """UPDATE user_addresses SET is_primary = FALSE, updated_at = %s, version = version + 1
            WHERE user_id = %s AND is_primary""",
        (now, user_id),
    )

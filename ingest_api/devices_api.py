"""A user's devices: register, list, revoke (``user_devices``), for the user's client.

The stream checks a request's ``metadata.device_id`` against the user's devices, so each
change publishes the user's whole device set (``WalletDevicesChanged``, versioned by the
user row) to each of the user's wallets, staged with the change (``ingest_api.outbox``).
The fraud policy reads the result as ``device_status``: KNOWN, REVOKED, UNKNOWN or NONE.
A revoked device is kept (a request naming it is a signal), and stays revoked.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from psycopg.rows import dict_row

from domain import records
from domain.inputs import CanonicalUuid
from ingest_api import outbox
from ingest_api.customer_schemas import DeviceOut, RegisterDevice
from ingest_api.deps import Onboarder, service_of
from ingest_api.exceptions import NotFound, Unprocessable
from ingest_api.limit_store import WALLETS_PER_USER_MAX
from ingest_api.ownership import owned_user

router = APIRouter(prefix="/v1/users", tags=["devices"])

DEVICES_PER_USER_MAX = records.DEVICES_PER_USER_MAX
_COLUMNS = """device_id, user_id, device_type, device_name, last_used_at, created_at,
    revoked_at, CASE WHEN revoked_at IS NULL THEN 'ACTIVE' ELSE 'REVOKED' END AS status"""


async def _announce(cur: Any, user_id: uuid.UUID) -> None:
    """Stage the user's device set for each of the user's wallets (the user row is locked)."""
    await cur.execute(
        "UPDATE users SET version = version + 1 WHERE user_id = %s RETURNING version", (user_id,)
    )
    version = (await cur.fetchone())["version"]
    await cur.execute(
        "SELECT device_id, revoked_at IS NULL AS active FROM user_devices WHERE user_id = %s",
        (user_id,),
    )
    devices = {
        row["device_id"]: "ACTIVE" if row["active"] else "REVOKED" for row in await cur.fetchall()
    }
    await cur.execute(
        """SELECT wallet_id FROM wallets WHERE user_id = %s AND wallet_type <> 'SYSTEM'
            ORDER BY created_at DESC LIMIT %s""",
        (user_id, WALLETS_PER_USER_MAX),
    )
    announced = [
        records.WalletDevicesChanged(
            wallet_id=row["wallet_id"], user_id=user_id, version=version, devices=devices
        )
        for row in await cur.fetchall()
    ]
    await outbox.stage(cur, user_id, list(announced))


@router.post("/{user_id}/devices", status_code=201, response_model=DeviceOut)
async def register_device(
    user_id: CanonicalUuid, body: RegisterDevice, client: Onboarder, request: Request
) -> dict:
    """Register a device of the user; its ``device_id`` is what the app sends as
    ``metadata.device_id`` with each transaction. 422 TOO_MANY_DEVICES past 32."""
    service = service_of(request)
    now = datetime.now(UTC)
    async with service.repository.pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id, lock=True)
        await cur.execute("SELECT count(*) AS n FROM user_devices WHERE user_id = %s", (user_id,))
        if (await cur.fetchone())["n"] >= DEVICES_PER_USER_MAX:  # type: ignore[index]
            raise Unprocessable(
                f"a user has at most {DEVICES_PER_USER_MAX} devices", code="TOO_MANY_DEVICES"
            )
        await cur.execute(
            f"""INSERT INTO user_devices (device_id, user_id, device_type, device_token,
                   device_name, last_used_at, created_at, updated_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (
                uuid.uuid4(),
                user_id,
                body.device_type.value,
                body.device_token,
                body.device_name,
                now,
                now,
                now,
            ),
        )
        device = await cur.fetchone()
        await _announce(cur, user_id)
    await outbox.publish(service.repository.pool, service.publisher, user_id)
    return device  # type: ignore[return-value]


@router.get("/{user_id}/devices", response_model=list[DeviceOut])
async def list_devices(user_id: CanonicalUuid, client: Onboarder, request: Request) -> list:
    """The user's devices, revoked ones too, the newest first (never their tokens)."""
    async with service_of(request).repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id)
        await cur.execute(
            f"SELECT {_COLUMNS} FROM user_devices WHERE user_id = %s ORDER BY created_at DESC",
            (user_id,),
        )
        return await cur.fetchall()


@router.delete("/{user_id}/devices/{device_id}", response_model=DeviceOut)
async def revoke_device(
    user_id: CanonicalUuid, device_id: CanonicalUuid, client: Onboarder, request: Request
) -> dict:
    """Revoke a device (lost, sold): a request naming it is REVOKED for the fraud policy.
    Revoking a revoked device changes nothing. 404 DEVICE_NOT_FOUND."""
    service = service_of(request)
    now = datetime.now(UTC)
    async with service.repository.pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id, lock=True)
        await cur.execute(
            f"""UPDATE user_devices SET revoked_at = COALESCE(revoked_at, %s), updated_at = %s
                 WHERE device_id = %s AND user_id = %s RETURNING {_COLUMNS}""",
            (now, now, device_id, user_id),
        )
        device = await cur.fetchone()
        if device is None:
            raise NotFound(f"user {user_id} has no device {device_id}", code="DEVICE_NOT_FOUND")
        if device["revoked_at"] == now:
            await _announce(cur, user_id)
    await outbox.publish(service.repository.pool, service.publisher, user_id)
    return device  # type: ignore[return-value]

"""The simulated customers' side: devices, identity documents and cards through the API,
so ``walletpipe simulate`` (and ``make demo``) exercises them.

Each customer registers its devices (the simulator's device names become the API's device
ids in each request's ``metadata.device_id``; a fraudster's device stays unknown to the
stream: ``device_status`` UNKNOWN), most upload an identity document, and compliance
(a key of its own, issued for the demo) approves most of those and rejects a few: verified
customers lose the PENDING default limits, rejected ones may no longer pay out. Every
customer adds a card; the money mules share one (the same card on several users), and
deposits name the card they come from (``metadata.payment_method_id``).
"""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psycopg

from domain.access import hash_api_key, new_api_key
from domain.masking import luhn_valid

#: Shares of the customers that upload a document, and of those that compliance rejects.
KYC_UPLOAD_SHARE = 0.75
KYC_REJECT_SHARE = 0.1
DEVICE_TYPES = ("ANDROID", "IOS", "WEB")
#: Customers onboarded at a time: all at once waited out the API's PostgreSQL pool (503s)
#: on a loaded machine, as creating the population did.
ONBOARDED_AT_ONCE = 16
#: A 1x1 PNG: the smallest file the API takes as a PNG by its bytes.
TINY_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d6a4f40000000049454e44ae426082"
    )
).decode()
COMPLIANCE_CLIENT = "demo-compliance"

Post = Callable[[str, dict], Awaitable[dict | None]]


def issue_compliance_key(database_url: str) -> str:
    """A compliance key for the simulation (a client of its own: the demo app's key must
    not decide its own customers' documents)."""
    key = new_api_key()
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "SELECT api_key_issue(p_client_name => %s, p_key_hash => %s, p_key_prefix => %s,"
            " p_roles => %s, p_label => 'simulate', p_client_rate_limit => %s)",
            (COMPLIANCE_CLIENT, hash_api_key(key), key[:10], ["compliance"], 1000),
        )
    return key


def card_number(rng: random.Random) -> str:
    body = "4" + "".join(str(rng.randrange(10)) for _ in range(14))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


class CustomerSide:
    """What the simulation registered: device name → API device id."""

    def __init__(self, post: Post, seed: int) -> None:
        self.post = post
        self.rng = random.Random(f"customers:{seed}")
        self.devices: dict[str, str] = {}
        self.cards: dict[str, str] = {}  # customer id -> its card's payment method id
        self.counts = {"devices": 0, "documents": 0, "verified": 0, "rejected": 0, "cards": 0}

    async def onboard(
        self,
        users: dict[str, str],
        devices_of: dict[str, tuple[str, ...]],
        mules: set[str],
        compliance: aiohttp.ClientSession | None,
    ) -> dict[str, int]:
        shared_card = card_number(self.rng)
        plans = []
        for actor, user_id in sorted(users.items()):
            upload = self.rng.random() < KYC_UPLOAD_SHARE
            reject = self.rng.random() < KYC_REJECT_SHARE
            card = shared_card if actor in mules else card_number(self.rng)
            plans.append((actor, user_id, upload, reject, card))
        at_once = asyncio.Semaphore(ONBOARDED_AT_ONCE)

        async def bounded(plan: tuple) -> None:
            async with at_once:
                await self._one(*plan, devices_of, compliance)

        await asyncio.gather(*[bounded(plan) for plan in plans])
        return self.counts

    async def _one(
        self,
        actor: str,
        user_id: str,
        upload: bool,
        reject: bool,
        card: str,
        devices_of: dict[str, tuple[str, ...]],
        compliance: aiohttp.ClientSession | None,
    ) -> None:
        for index, name in enumerate(devices_of.get(actor, ())):
            body = {"device_type": DEVICE_TYPES[index % 3], "device_name": name[:100]}
            device = await self.post(f"/v1/users/{user_id}/devices", body)
            if device is not None:
                self.devices[name] = device["device_id"]
                self.counts["devices"] += 1
        method = {
            "card_number": card,
            "cvv": "123",
            "expiry_month": 12,
            "expiry_year": 2031,
            "card_holder_name": f"Sim User{actor}"[:255],
        }
        added = await self.post(f"/v1/users/{user_id}/payment-methods/cards", method)
        if added is not None:
            self.cards[actor] = added["payment_method_id"]
            self.counts["cards"] += 1
        if not upload:
            return
        document = await self.post(
            f"/v1/users/{user_id}/kyc-documents",
            {
                "document_type": "ID_CARD",
                "document_number": f"SIM{uuid.uuid4().hex[:10].upper()}",
                "issuing_country": "US",
                "issue_date": "2022-01-01",
                "expiry_date": "2032-01-01",
                "content_base64": TINY_PNG,
            },
        )
        if document is None:
            return
        self.counts["documents"] += 1
        if compliance is None:
            return
        verdict = "reject" if reject else "approve"
        body: dict[str, Any] = {"reason": "simulated: unreadable"} if reject else {}
        path = f"/v1/kyc-documents/{document['document_id']}/{verdict}"
        async with compliance.post(path, json=body) as answer:
            if answer.status == 200:
                self.counts["rejected" if reject else "verified"] += 1

    def device_id(self, name: str | None) -> str | None:
        """The API's id of a simulated device (unknown ones, a fraudster's, pass as named)."""
        if name is None:
            return None
        return self.devices.get(name, name)

"""A user's payment methods: cards and bank accounts (``payment_methods`` with
``payment_cards`` / ``bank_accounts``), for the user's client.

* A card is checked (digits, Luhn, network, expiry), authorised for zero through the
  simulated gateway with its CVV, and only then stored: as the keyed hash of its number,
  its network, last four and expiry. A declined card leaves nothing behind. The CVV is
  never stored, logged or repeated; no error message repeats a number.
* A bank account's routing number must pass its checksum; the account number is stored
  encrypted with its last four in clear. The gateway sends two micro-deposits; the
  account is usable (ACTIVE) once the customer names them (3 tries).

``shared_card_users`` on a card is how many other users hold the same card: a fraud
signal (one card on many accounts). Each change publishes the user's methods (kinds,
usable or not, sharing; never a number) to each of the user's wallets
(``WalletPaymentMethodsChanged``): a DEPOSIT naming ``metadata.payment_method_id`` must name
a usable card of the user and a WITHDRAWAL a usable bank account (else the stream refuses
it, ``PAYMENT_METHOD_INVALID``), and the fraud policy reads the card's
``card_shared_users``. A WITHDRAWAL goes through the simulated gateway (two-phase) with its
method in the metadata.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Request
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from domain import records
from domain.exceptions import DomainError
from domain.inputs import AmountText, CanonicalUuid, FreeText
from domain.payment_methods import check_card, routing_number_valid
from ingest_api import outbox
from ingest_api.deps import Onboarder, service_of
from ingest_api.exceptions import Conflict, NotFound, Unprocessable
from ingest_api.limit_store import WALLETS_PER_USER_MAX
from ingest_api.ownership import owned_user
from ingest_api.payment_gateway import SimulatedGateway
from ingest_api.payment_vault import PaymentVault
from ingest_api.schemas import Strict

router = APIRouter(prefix="/v1/users", tags=["payment methods"])

METHODS_PER_USER_MAX = 20
VERIFICATION_TRIES_MAX = 3


class AddCard(Strict):
    card_type: Literal["CREDIT", "DEBIT"] = "DEBIT"
    card_number: str = Field(min_length=13, max_length=19, pattern=r"^[0-9]+$")
    cvv: str = Field(min_length=3, max_length=4, pattern=r"^[0-9]+$")
    expiry_month: int = Field(ge=1, le=12)
    expiry_year: int = Field(ge=2000, le=2100)
    card_holder_name: FreeText = Field(min_length=1, max_length=255)
    billing_address_id: CanonicalUuid | None = None


class AddBankAccount(Strict):
    account_holder_name: FreeText = Field(min_length=1, max_length=255)
    bank_name: FreeText = Field(min_length=1, max_length=255)
    account_number: str = Field(min_length=4, max_length=17, pattern=r"^[0-9]+$")
    routing_number: str = Field(min_length=9, max_length=9, pattern=r"^[0-9]+$")
    account_type: Literal["CHECKING", "SAVINGS"] = "CHECKING"


class ConfirmMicroDeposits(Strict):
    amounts: list[AmountText] = Field(min_length=2, max_length=2)


class PaymentMethodOut(BaseModel):
    payment_method_id: uuid.UUID
    method_type: str
    status: str
    is_verified: bool
    #: Cards: VISA, MASTERCARD, AMEX; bank accounts: the bank's name.
    network: str | None = None
    bank_name: str | None = None
    last_four: str
    expiry_month: int | None = None
    expiry_year: int | None = None
    #: Other users holding the same card (a fraud signal).
    shared_card_users: int | None = None
    created_at: datetime


async def _announce(cur: Any, user_id: uuid.UUID) -> None:
    """Stage the user's payment methods (kinds, usable or not, cards' sharing) for each of
    the user's wallets; the user row is locked."""
    await cur.execute(
        "UPDATE users SET version = version + 1 WHERE user_id = %s RETURNING version", (user_id,)
    )
    version = (await cur.fetchone())["version"]
    await cur.execute(
        """SELECT payment_method_id AS id FROM payment_methods WHERE user_id = %s
            ORDER BY created_at DESC LIMIT %s""",
        (user_id, records.PAYMENT_METHODS_PER_USER_MAX),
    )
    methods = {}
    for row in await cur.fetchall():
        method = await _method(cur, user_id, row["id"])
        methods[row["id"]] = records.PaymentMethodFacts(
            kind="BANK_ACCOUNT" if method["method_type"] == "BANK_ACCOUNT" else "CARD",
            usable=method["status"] == "ACTIVE" and bool(method["is_verified"]),
            shared_users=method["shared_card_users"] or 0,
        )
    await cur.execute(
        """SELECT wallet_id FROM wallets WHERE user_id = %s AND wallet_type <> 'SYSTEM'
            ORDER BY created_at DESC LIMIT %s""",
        (user_id, WALLETS_PER_USER_MAX),
    )
    announced = [
        records.WalletPaymentMethodsChanged(
            wallet_id=row["wallet_id"], user_id=user_id, version=version, methods=methods
        )
        for row in await cur.fetchall()
    ]
    await outbox.stage(cur, user_id, list(announced))


async def _publish(request: Request, user_id: uuid.UUID) -> None:
    service = service_of(request)
    await outbox.publish(service.repository.pool, service.publisher, user_id)


def _vault(request: Request) -> PaymentVault:
    return PaymentVault.load(service_of(request).settings.payment_keys_file)


async def _start(cur: Any, client: Any, user_id: uuid.UUID) -> None:
    await owned_user(cur, client, user_id, lock=True)
    await cur.execute(
        "SELECT count(*) AS n FROM payment_methods WHERE user_id = %s AND status <> 'REMOVED'",
        (user_id,),
    )
    if (await cur.fetchone())["n"] >= METHODS_PER_USER_MAX:
        raise Unprocessable(
            f"a user has at most {METHODS_PER_USER_MAX} payment methods", code="TOO_MANY_METHODS"
        )


@router.post("/{user_id}/payment-methods/cards", status_code=201, response_model=PaymentMethodOut)
async def add_card(
    user_id: CanonicalUuid, body: AddCard, client: Onboarder, request: Request
) -> dict:
    """Add a card, verified by a zero-amount authorisation. 422 INVALID_CARD_NUMBER,
    UNSUPPORTED_CARD, CARD_EXPIRED, CARD_DECLINED (nothing stored), ADDRESS_NOT_FOUND."""
    try:
        network = check_card(body.card_number, body.expiry_month, body.expiry_year, date.today())
    except DomainError as error:
        raise Unprocessable(error.message, code=error.code) from None
    vault = _vault(request)
    verdict = SimulatedGateway(vault.hmac_key).authorise_zero_amount(body.card_number, body.cvv)
    if not verdict.approved:
        raise Unprocessable(verdict.reason, code="CARD_DECLINED")
    card_hash = vault.card_hash(body.card_number)
    method_id, now = uuid.uuid4(), datetime.now(UTC)
    async with service_of(request).repository.pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await _start(cur, client, user_id)
        if body.billing_address_id is not None:
            await cur.execute(
                "SELECT 1 FROM user_addresses WHERE address_id = %s AND user_id = %s",
                (body.billing_address_id, user_id),
            )
            if await cur.fetchone() is None:
                raise NotFound("the billing address is not the user's", code="ADDRESS_NOT_FOUND")
        await cur.execute(
            """SELECT 1 FROM payment_cards c JOIN payment_methods m USING (payment_method_id)
                WHERE c.card_number_hash = %s AND m.user_id = %s AND m.status <> 'REMOVED'""",
            (card_hash, user_id),
        )
        if await cur.fetchone() is not None:
            raise Conflict("the user has this card already", code="CARD_EXISTS")
        await cur.execute(
            """INSERT INTO payment_methods (payment_method_id, user_id, method_type, status,
                   created_at, updated_at) VALUES (%s, %s, %s, 'ACTIVE', %s, %s)""",
            (method_id, user_id, f"{body.card_type}_CARD", now, now),
        )
        await cur.execute(
            """INSERT INTO payment_cards (card_id, payment_method_id, card_holder_name,
                   card_network, card_number_hash, last_four, expiry_month, expiry_year,
                   billing_address_id, is_verified, created_at, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, TRUE, %s, %s)""",
            (
                uuid.uuid4(), method_id, body.card_holder_name, network, card_hash,
                body.card_number[-4:], body.expiry_month, body.expiry_year,
                body.billing_address_id, now, now,
            ),
        )  # fmt: skip
        answer = await _method(cur, user_id, method_id)
        await _announce(cur, user_id)
    await _publish(request, user_id)
    return answer


@router.post(
    "/{user_id}/payment-methods/bank-accounts", status_code=201, response_model=PaymentMethodOut
)
async def add_bank_account(
    user_id: CanonicalUuid, body: AddBankAccount, client: Onboarder, request: Request
) -> dict:
    """Add a bank account (INACTIVE until its two micro-deposits are confirmed). 422
    INVALID_ROUTING_NUMBER."""
    if not routing_number_valid(body.routing_number):
        raise Unprocessable("the routing number fails its checksum", code="INVALID_ROUTING_NUMBER")
    vault = _vault(request)
    method_id, now = uuid.uuid4(), datetime.now(UTC)
    async with service_of(request).repository.pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await _start(cur, client, user_id)
        await cur.execute(
            """INSERT INTO payment_methods (payment_method_id, user_id, method_type, status,
                   created_at, updated_at) VALUES (%s, %s, 'BANK_ACCOUNT', 'INACTIVE', %s, %s)""",
            (method_id, user_id, now, now),
        )
        await cur.execute(
            """INSERT INTO bank_accounts (bank_account_id, payment_method_id, account_holder_name,
                   bank_name, account_number, routing_number, account_type, last_four,
                   verification_method, created_at, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'MICRO_DEPOSITS', %s, %s)""",
            (
                uuid.uuid4(), method_id, body.account_holder_name, body.bank_name,
                vault.encrypt(body.account_number, str(method_id)), body.routing_number,
                body.account_type, body.account_number[-4:], now, now,
            ),
        )  # fmt: skip
        answer = await _method(cur, user_id, method_id)
        await _announce(cur, user_id)
    await _publish(request, user_id)
    SimulatedGateway(vault.hmac_key).send_micro_deposits(str(method_id))
    return answer


@router.post(
    "/{user_id}/payment-methods/{payment_method_id}/verify", response_model=PaymentMethodOut
)
async def confirm_micro_deposits(
    user_id: CanonicalUuid,
    payment_method_id: CanonicalUuid,
    body: ConfirmMicroDeposits,
    client: Onboarder,
    request: Request,
) -> dict:
    """Name the two micro-deposits (any order) to make a bank account usable. 422
    VERIFICATION_FAILED (a wrong pair; 3 tries), VERIFICATION_LOCKED; 409 ALREADY_VERIFIED."""
    expected = sorted(
        SimulatedGateway(_vault(request).hmac_key).send_micro_deposits(str(payment_method_id))
    )
    named = sorted(Decimal(amount) for amount in body.amounts)
    now = datetime.now(UTC)
    async with service_of(request).repository.pool.connection() as conn:
        async with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await owned_user(cur, client, user_id, lock=True)
            await cur.execute(
                """SELECT b.is_verified, b.verification_attempts FROM bank_accounts b
                     JOIN payment_methods m USING (payment_method_id)
                    WHERE m.payment_method_id = %s AND m.user_id = %s AND m.status <> 'REMOVED'""",
                (payment_method_id, user_id),
            )
            account = await cur.fetchone()
            if account is None:
                raise NotFound("no such bank account of the user", code="PAYMENT_METHOD_NOT_FOUND")
            if account["is_verified"]:
                raise Conflict("the account is verified already", code="ALREADY_VERIFIED")
            if account["verification_attempts"] >= VERIFICATION_TRIES_MAX:
                raise Unprocessable("too many wrong tries", code="VERIFICATION_LOCKED")
            right = named == expected
            await cur.execute(
                """UPDATE bank_accounts SET is_verified = %s, updated_at = %s,
                          verification_attempts = verification_attempts + %s
                    WHERE payment_method_id = %s""",
                (right, now, 0 if right else 1, payment_method_id),
            )
            if right:
                await cur.execute(
                    """UPDATE payment_methods SET status = 'ACTIVE', updated_at = %s,
                              version = version + 1 WHERE payment_method_id = %s""",
                    (now, payment_method_id),
                )
                answer = await _method(cur, user_id, payment_method_id)
                await _announce(cur, user_id)
        if right:
            await _publish(request, user_id)
            return answer
        # Committed: the wrong try counts.
        raise Unprocessable("those are not the amounts sent", code="VERIFICATION_FAILED")


@router.get("/{user_id}/payment-methods", response_model=list[PaymentMethodOut])
async def list_methods(user_id: CanonicalUuid, client: Onboarder, request: Request) -> list:
    """The user's payment methods (removed ones left out), the newest first."""
    async with service_of(request).repository.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id)
        await cur.execute(
            """SELECT payment_method_id FROM payment_methods
                WHERE user_id = %s AND status <> 'REMOVED' ORDER BY created_at DESC""",
            (user_id,),
        )
        ids = [row["payment_method_id"] for row in await cur.fetchall()]
        return [await _method(cur, user_id, method_id) for method_id in ids]


@router.delete("/{user_id}/payment-methods/{payment_method_id}", status_code=204)
async def remove_method(
    user_id: CanonicalUuid, payment_method_id: CanonicalUuid, client: Onboarder, request: Request
) -> None:
    """Remove a payment method (kept as REMOVED for the records). 404
    PAYMENT_METHOD_NOT_FOUND."""
    async with service_of(request).repository.pool.connection() as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await owned_user(cur, client, user_id, lock=True)
        await cur.execute(
            """UPDATE payment_methods SET status = 'REMOVED', updated_at = %s,
                      version = version + 1
                WHERE payment_method_id = %s AND user_id = %s AND status <> 'REMOVED'""",
            (datetime.now(UTC), payment_method_id, user_id),
        )
        if cur.rowcount != 1:
            raise NotFound("no such payment method of the user", code="PAYMENT_METHOD_NOT_FOUND")
        await _announce(cur, user_id)
    await _publish(request, user_id)


async def _method(cur: Any, user_id: uuid.UUID, method_id: uuid.UUID) -> dict[str, Any]:
    await cur.execute(
        """SELECT m.payment_method_id, m.method_type, m.status, m.created_at,
                  COALESCE(c.is_verified, b.is_verified) AS is_verified, c.card_network AS network,
                  b.bank_name, COALESCE(c.last_four, b.last_four) AS last_four, c.expiry_month,
                  c.expiry_year,
                  CASE WHEN c.card_id IS NULL THEN NULL ELSE
                    (SELECT count(DISTINCT m2.user_id) FROM payment_cards c2
                       JOIN payment_methods m2 USING (payment_method_id)
                      WHERE c2.card_number_hash = c.card_number_hash AND m2.user_id <> %s
                        AND m2.status <> 'REMOVED') END AS shared_card_users
             FROM payment_methods m
             LEFT JOIN payment_cards c USING (payment_method_id)
             LEFT JOIN bank_accounts b USING (payment_method_id)
            WHERE m.payment_method_id = %s""",
        (user_id, method_id),
    )
    return await cur.fetchone()  # type: ignore[no-any-return]

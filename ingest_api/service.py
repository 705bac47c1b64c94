"""The API's handlers: the rules of a request, between the HTTP route and the stores.

``check_transaction`` is pure (wallet facts in, errors or nothing out) so the rules are
tested without HTTP or a database; ``IngestService`` adds the lookups and the publishing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from domain import records
from domain.access import KeyGrant
from domain.exceptions import DomainError
from domain.money import AMOUNT_MAX, currency_exponent, parse_amount, wire
from domain.text import is_visible_ascii
from domain.topics import WALLET_COMMANDS
from domain.transactions import FeeSchedule, TransactionStatus, TransactionType, check_wallets
from ingest_api import outages
from ingest_api.caching import RevisionCache
from ingest_api.exceptions import (
    ApiError,
    Conflict,
    Forbidden,
    NotFound,
    Unavailable,
    Unprocessable,
)
from ingest_api.limit_store import publish_wallet_limits
from ingest_api.outcomes import OutcomeWatcher
from ingest_api.publisher import KafkaPublisher
from ingest_api.recorder import RequestRecorder
from ingest_api.repository import AcceptedRequest, Repository, WalletAccess
from ingest_api.schemas import CreateTransaction, CreateUser, CreateWallet
from ingest_api.settings import IngestSettings
from ingest_api.submission import (
    Submitted,
    accepted_answer_of,
    request_transaction_id,
    to_record,
)

log = logging.getLogger("ingest_api")
IDEMPOTENCY_KEY_LENGTH_MAX = 255
#: Refusals that cached wallet access can make stale, checked again before answering.
STALE_REFUSALS = frozenset({"WALLET_FORBIDDEN", "WALLET_NOT_ACTIVE"})

PUBLISHED_MARKS_MAX = 10_000


def checked_idempotency_key(idempotency_key: str | None, per: str) -> str:
    """The Idempotency-Key header every money-moving request carries: present, printable
    ASCII, at most 255 characters (it is stored and compared as given)."""
    if not idempotency_key:
        raise Unprocessable(
            f"send an Idempotency-Key header (unique per {per})", code="MISSING_IDEMPOTENCY_KEY"
        )
    if len(idempotency_key) > IDEMPOTENCY_KEY_LENGTH_MAX:
        raise Unprocessable(
            "Idempotency-Key is longer than 255 characters", code="INVALID_IDEMPOTENCY_KEY"
        )
    if not is_visible_ascii(idempotency_key):
        raise Unprocessable(
            "Idempotency-Key must be printable ASCII", code="INVALID_IDEMPOTENCY_KEY"
        )
    return idempotency_key


def request_fingerprint(body: CreateTransaction) -> str:
    """Same key with a different body is a client bug we must refuse, not silently merge."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _wallet(
    wallets: dict[uuid.UUID, WalletAccess],
    wallet_id: uuid.UUID,
    role: str,
    currency_code: str,
    must_own: bool,
) -> WalletAccess:
    wallet = wallets.get(wallet_id)
    if wallet is None:
        raise NotFound(f"{role} wallet {wallet_id} does not exist", code="WALLET_NOT_FOUND")
    if must_own and not wallet.allowed:
        raise Forbidden(
            f"this API key may not move money from or into {role} wallet {wallet_id}",
            code="WALLET_FORBIDDEN",
        )
    if wallet.status != "ACTIVE":
        raise Unprocessable(
            f"{role} wallet {wallet_id} is {wallet.status}", code="WALLET_NOT_ACTIVE"
        )
    if wallet.currency_code != currency_code:
        raise Unprocessable(
            f"{role} wallet {wallet_id} holds {wallet.currency_code}, not {currency_code}",
            code="CURRENCY_MISMATCH",
        )
    return wallet


def check_transaction(
    body: CreateTransaction, wallets: dict[uuid.UUID, WalletAccess], fees: FeeSchedule
) -> tuple[Decimal, Decimal, WalletAccess | None, WalletAccess | None]:
    """Validate a request against its wallets; return (amount, fee, source, destination).

    The money-leaving wallet must belong to the caller (or be granted to it); a deposit's
    destination too. A transfer or payment may credit anyone's wallet.
    """
    try:
        currency_exponent(body.currency_code)
        check_wallets(body.transaction_type, body.source_wallet_id, body.destination_wallet_id)
        amount = parse_amount(body.amount, body.currency_code)
    except DomainError as error:
        raise Unprocessable(error.message, code=error.code) from None
    source = destination = None
    if body.source_wallet_id is not None:
        source = _wallet(wallets, body.source_wallet_id, "source", body.currency_code, True)
    if body.destination_wallet_id is not None:
        is_deposit = body.transaction_type is TransactionType.DEPOSIT
        destination = _wallet(
            wallets, body.destination_wallet_id, "destination", body.currency_code, is_deposit
        )
    fee = fees.fee_for(body.transaction_type, amount, body.currency_code)
    if amount + fee > AMOUNT_MAX:
        raise Unprocessable(f"amount plus fee exceeds {AMOUNT_MAX}", code="INVALID_AMOUNT")
    return amount, fee, source, destination


def accepted_answer(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "transaction_id": record["transaction_id"],
        "transaction_status": TransactionStatus.PENDING.value,
        "status": TransactionStatus.PENDING.value,
        "transaction_type": record["transaction_type"],
        "amount": record["amount"],
        "fee_amount": record["fee_amount"],
        "total_amount": record["total_amount"],
        "currency_code": record["currency_code"],
        "created_at": record["requested_at"],
    }


class IngestService:
    def __init__(
        self,
        settings: IngestSettings,
        repository: Repository,
        publisher: KafkaPublisher,
        outcomes: OutcomeWatcher | None = None,
    ) -> None:
        self._settings = settings
        self._outcomes = outcomes
        self._repository = repository
        self._publisher = publisher
        self._fees = settings.fee_schedule
        self._wallets: RevisionCache[tuple[uuid.UUID, uuid.UUID], WalletAccess] = RevisionCache(
            settings.cache_entries_max, settings.api_key_trust_ms
        )
        self._recorder = RequestRecorder(repository.quick_pool, batch_max=settings.record_batch_max)
        self._published: asyncio.Queue[uuid.UUID] = asyncio.Queue(PUBLISHED_MARKS_MAX)

    @property
    def settings(self) -> IngestSettings:
        return self._settings

    @property
    def repository(self) -> Repository:
        return self._repository

    @property
    def publisher(self) -> KafkaPublisher:
        return self._publisher

    @property
    def recorder(self) -> RequestRecorder:
        return self._recorder

    async def create_user(self, client: KeyGrant, body: CreateUser) -> dict[str, Any]:
        salt = secrets.token_hex(16)
        digest = await asyncio.to_thread(
            hashlib.scrypt,
            body.password.encode(),
            salt=bytes.fromhex(salt),
            n=self._settings.password_scrypt_n,
            r=8,
            p=1,
            maxmem=2**26,
            dklen=32,
        )
        fields = body.model_dump(exclude={"password"})
        fields.update(password_hash=digest.hex(), salt=salt)
        return await self._repository.create_user(client.client_id, fields)

    async def create_wallet(self, client: KeyGrant, body: CreateWallet) -> dict[str, Any]:
        try:
            currency_exponent(body.currency_code)
        except DomainError as error:
            raise Unprocessable(error.message, code=error.code) from None
        owned = await self._repository.user_owned(client.client_id, body.user_id)
        if owned is None:
            raise NotFound(f"user {body.user_id} does not exist", code="USER_NOT_FOUND")
        if not owned:
            raise Forbidden(f"user {body.user_id} belongs to another client", code="USER_FORBIDDEN")
        wallet = await self._repository.create_wallet(
            body.user_id, body.wallet_type.value, body.currency_code
        )
        # The user's limits must reach the new wallet's partition before it spends.
        await publish_wallet_limits(self._repository.pool, self._publisher, wallet["wallet_id"])
        return wallet

    async def wallet_access(
        self, client: KeyGrant, wallet_ids: list[uuid.UUID], *, fresh: bool = False
    ) -> dict[uuid.UUID, WalletAccess]:
        """From memory (``RevisionCache``) what it holds; ``fresh``: all from PostgreSQL."""
        found: dict[uuid.UUID, WalletAccess] = {}
        missing = []
        for wallet_id in wallet_ids:
            cached = None if fresh else self._wallets.get((client.client_id, wallet_id))
            if cached is None:
                missing.append(wallet_id)
            else:
                found[wallet_id] = cached
        if missing:
            fetched, revision = await self._repository.wallet_access_with_revision(
                client.client_id, missing
            )
            for wallet_id, access in fetched.items():
                self._wallets.put((client.client_id, wallet_id), access, revision)
            found.update(fetched)
        return found

    async def watch_wallet_access(self, poll_s: float) -> None:
        """Forever (a task of the app's lifespan): confirm the cached wallet access against
        ``wallet_access_revision``; a failed read leaves the cache untrusted after
        ``api_key_trust_ms``, so requests then ask PostgreSQL themselves."""
        while True:
            sent_at = time.monotonic()
            try:
                self._wallets.confirm(await self._repository.wallet_access_revision(), sent_at)
            except Exception as error:  # noqa: BLE001 - keep watching; the cache stops trusting
                log.warning("cannot read wallet_access_revision: %s", error)
            await asyncio.sleep(poll_s)

    async def checked_record(
        self,
        client: KeyGrant,
        body: CreateTransaction,
        idempotency_key: str,
        ip_address: str | None,
        user_agent: str | None,
        wallets: dict[uuid.UUID, WalletAccess],
    ) -> records.TransactionRequested:
        """``prepare_transaction`` with the wallets given (from memory, mostly); a refusal
        that memory may have made stale (a grant, a reactivation just committed, seen by
        this process's poller within ``api_key_revision_poll_ms``) is checked again against
        PostgreSQL, so only refusals pay for a read."""
        try:
            return self.prepare_transaction(
                client, body, idempotency_key, ip_address, user_agent, wallets
            )
        except ApiError as error:
            if error.code not in STALE_REFUSALS:
                raise
        wallet_ids = [w for w in (body.source_wallet_id, body.destination_wallet_id) if w]
        fresh = await self.wallet_access(client, wallet_ids, fresh=True)
        return self.prepare_transaction(
            client, body, idempotency_key, ip_address, user_agent, fresh
        )

    def prepare_transaction(
        self,
        client: KeyGrant,
        body: CreateTransaction,
        idempotency_key: str,
        ip_address: str | None,
        user_agent: str | None,
        wallets: dict[uuid.UUID, WalletAccess],
    ) -> records.TransactionRequested:
        """The record of an acceptable request, or the ``ApiError`` that refuses it."""
        amount, fee, source, destination = check_transaction(body, wallets, self._fees)
        metadata = dict(body.metadata)
        if body.external_reference_id:
            metadata["external_reference_id"] = body.external_reference_id
        owner = source or destination
        return records.TransactionRequested(
            transaction_id=request_transaction_id(client.client_id, idempotency_key),
            transaction_type=body.transaction_type,
            source_wallet_id=body.source_wallet_id,
            destination_wallet_id=body.destination_wallet_id,
            source_user_id=source.user_id if source else None,
            destination_user_id=destination.user_id if destination else None,
            kyc_status=owner.kyc_status if owner else None,
            amount=amount,
            fee_amount=fee,
            total_amount=amount + fee,
            currency_code=body.currency_code,
            description=body.description,
            client_id=client.client_id,
            idempotency_key=idempotency_key,
            ip_address=ip_address,
            user_agent=(user_agent or None) and user_agent[:500],
            metadata=metadata,
            requested_at=datetime.now(UTC),
        )

    @outages.nothing_recorded  # until the request is recorded; see ingest_api.outages
    async def submit_transaction(
        self,
        client: KeyGrant,
        body: CreateTransaction,
        idempotency_key: str | None,
        ip_address: str | None,
        user_agent: str | None,
        wait_s: int | None = None,
    ) -> Submitted:
        """Record and publish one request; with ``wait_s``, then wait that long at most for
        its outcome (ingest_api.outcomes). PostgreSQL work: the wallets' access when not
        cached, and the request's share of one INSERT (``RequestRecorder``)."""
        idempotency_key = checked_idempotency_key(idempotency_key, "transaction")
        fingerprint = request_fingerprint(body)
        try:
            wallet_ids = [w for w in (body.source_wallet_id, body.destination_wallet_id) if w]
            wallets = await self.wallet_access(client, wallet_ids)
            record = await self.checked_record(
                client, body, idempotency_key, ip_address, user_agent, wallets
            )
        except ApiError:
            # A repeat of an accepted request gets the first answer even if it would be
            # refused now (a wallet frozen since): only a refusal pays for this look-up.
            earlier = await self._repository.accepted_request(client.client_id, idempotency_key)
            if earlier is None:
                raise
            return Submitted(await self.replay(earlier, fingerprint), None)
        encoded = records.encode(record)
        with outages.recording():
            earlier = await self._recorder.record(to_record(record, fingerprint, encoded))
        if earlier is not None:
            return Submitted(await self.replay(earlier, fingerprint), None)
        waiter = None
        if wait_s and self._outcomes is not None:
            waiter = self._outcomes.register(record.transaction_id)  # before its outcome can be
        try:
            await self.publish(record, encoded)
        except BaseException:
            if waiter is not None and self._outcomes is not None:
                self._outcomes.forget(record.transaction_id)
            raise
        answer = accepted_answer_of(record)
        if waiter is None or self._outcomes is None or wait_s is None:
            return Submitted(answer, record)
        outcome = await self._outcomes.wait(record.transaction_id, waiter, wait_s)
        return Submitted(answer, record, waited=True, outcome=outcome)

    async def replay(self, earlier: AcceptedRequest, fingerprint: str) -> dict[str, Any]:
        if earlier.request_hash != fingerprint:
            raise Conflict(
                "this Idempotency-Key was used for a different request",
                code="IDEMPOTENCY_KEY_REUSED",
            )
        if not earlier.published:  # the first attempt may not have reached Kafka: resend it
            await self.publish(records.TransactionRequested.model_validate(earlier.record))
        return accepted_answer(earlier.record)

    async def publish(
        self, record: records.TransactionRequested, encoded: bytes | None = None
    ) -> None:
        def mark() -> None:
            try:
                self._published.put_nowait(record.transaction_id)
            except asyncio.QueueFull:
                pass  # only the marker is lost: the relay re-sends, and every consumer dedupes

        await self._publisher.publish(
            WALLET_COMMANDS.name,
            record.partition_key,
            encoded if encoded is not None else records.encode(record),
            on_late_delivery=mark,  # acknowledged after the caller heard OUTCOME_UNKNOWN
        )
        mark()

    async def flush_published_marks(self) -> int:
        """Mark a batch of requests as published in one statement (not one per request).
        While the database is away the batch waits in the queue (bounded) for the next try."""
        batch = []
        while not self._published.empty() and len(batch) < PUBLISHED_MARKS_MAX:
            batch.append(self._published.get_nowait())
        if batch:
            try:
                await self._repository.mark_published(batch)
            except Exception:
                for transaction_id in batch:
                    if self._published.full():
                        break  # the relay publishes the rest again
                    self._published.put_nowait(transaction_id)
                raise
        return len(batch)

    async def get_transaction(self, client: KeyGrant, transaction_id: uuid.UUID) -> dict[str, Any]:
        row, events, request = await self._repository.transaction(client.client_id, transaction_id)
        if request is None:
            raise NotFound(
                f"transaction {transaction_id} does not exist", code="TRANSACTION_NOT_FOUND"
            )
        if row is None:
            answer = accepted_answer(request)
            answer.update(
                source_wallet_id=request["source_wallet_id"],
                destination_wallet_id=request["destination_wallet_id"],
                description=request["description"],
                risk_score=None,
                failure_code=None,
                failure_reason=None,
                completed_at=None,
                events=[],
            )
            return answer
        failure = next((e for e in reversed(events) if e["event_type"] == "FAILED"), None)
        return {
            "transaction_id": row["transaction_id"],
            "transaction_type": row["transaction_type"],
            "transaction_status": row["transaction_status"],
            "status": row["transaction_status"],
            "source_wallet_id": row["source_wallet_id"],
            "destination_wallet_id": row["destination_wallet_id"],
            "amount": wire(row["amount"]),
            "fee_amount": wire(row["fee_amount"]),
            "total_amount": wire(row["total_amount"]),
            "currency_code": row["currency_code"],
            "description": row["description"],
            "risk_score": None if row["risk_score"] is None else str(row["risk_score"]),
            "failure_code": failure["error_code"] if failure else None,
            "failure_reason": failure["error_message"] if failure else None,
            "created_at": row["created_at"],
            "completed_at": row["completed_at"],
            "events": events,
        }

    async def grant_wallet(
        self, client: KeyGrant, wallet_id: uuid.UUID, grantee: uuid.UUID
    ) -> dict[str, Any]:
        """The owner lets another client (a partner, an acquirer) move money from a wallet.

        Only the wallet's owner may grant: a grant is never transitive.
        """
        owned = await self._repository.user_owned_wallet(client.client_id, wallet_id)
        if owned is None:
            raise NotFound(f"wallet {wallet_id} does not exist", code="WALLET_NOT_FOUND")
        if not owned:
            raise Forbidden(
                f"only the owner of wallet {wallet_id} may grant it", code="WALLET_FORBIDDEN"
            )
        if not await self._repository.client_exists(grantee):
            raise NotFound(f"client {grantee} does not exist", code="CLIENT_NOT_FOUND")
        grant = await self._repository.grant_wallet(wallet_id, grantee)
        self._wallets.discard((grantee, wallet_id))
        return grant

    async def get_balance(self, client: KeyGrant, wallet_id: uuid.UUID) -> dict[str, Any]:
        access = (await self.wallet_access(client, [wallet_id])).get(wallet_id)
        if access is None:
            raise NotFound(f"wallet {wallet_id} does not exist", code="WALLET_NOT_FOUND")
        if not access.allowed:
            raise Forbidden(
                f"wallet {wallet_id} belongs to another client", code="WALLET_FORBIDDEN"
            )
        row = await self._repository.balance(wallet_id, access.user_id)
        if row is None:
            raise Unavailable(f"wallet {wallet_id} has no balance row", code="BALANCE_MISSING")
        return {
            "wallet_id": row["wallet_id"],
            "currency_code": row["currency_code"],
            "available": wire(row["available_balance"]),
            "pending": wire(row["pending_balance"]),
            "reserved": wire(row["reserved_balance"]),
            "last_updated_at": row["last_updated_at"],
        }

"""Webhooks: which pipeline records become which events, how a delivery is signed, when a
failed one is tried again, and which endpoint addresses may be called.

Pure: no I/O. The notification service (notifications/) consumes the pipeline's topics,
turns records into ``WebhookEvent``s with ``events_of`` and delivers them; the ingest API
checks an endpoint's address with the same ``AddressPolicy`` when a client subscribes.

Event ids are stable: an event about a transaction is named by its type and the
transaction (``uuid5``), so the same outcome read twice (a relay's repeat, a replay) is the
same event, delivered to each endpoint once unless it fails.

>>> header = sign("whsec_test", 1_700_000_000, b'{"id":"x"}')
>>> header.startswith("t=1700000000,v1=")
True
>>> verify("whsec_test", header, b'{"id":"x"}', now_s=1_700_000_100)
True
>>> verify("whsec_test", header, b'{"id":"x"}', now_s=1_700_000_400)  # older than 5 min
False
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import orjson

from domain.exceptions import DomainError

#: The header carrying ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.
SIGNATURE_HEADER = "Walletpipe-Signature"
EVENT_ID_HEADER = "Walletpipe-Event-Id"
EVENT_TYPE_HEADER = "Walletpipe-Event-Type"
ATTEMPT_HEADER = "Walletpipe-Attempt"
#: A receiver refuses a signature older than this (a replayed request).
SIGNATURE_TOLERANCE_S = 300
SECRET_PREFIX = "whsec_"
#: Characters of a secret shown in listings, to tell secrets apart.
SECRET_DISPLAY_LENGTH = 12
URL_LENGTH_MAX = 2_000
_EVENT_NAMESPACE = uuid.UUID("6f0d1c2e-5b7a-4c1e-9a53-2f64b1e0c0de")


class WebhookError(DomainError):
    """Root of the webhook rules' errors."""

    code = "WEBHOOK_ERROR"


class EndpointRefused(WebhookError):
    """The endpoint is not http(s) or resolves to an address the operator has not allowed
    (loopback, private, link-local ... by default). Caller: use a public http(s) endpoint;
    operator: allow a network with WEBHOOK_ALLOWED_NETWORKS (or WEBHOOK_ALLOW_LOOPBACK)."""

    code = "WEBHOOK_ENDPOINT_REFUSED"


class EventType(StrEnum):
    TRANSACTION_COMPLETED = "transaction.completed"
    TRANSACTION_FAILED = "transaction.failed"
    TRANSACTION_REVIEW_REQUESTED = "transaction.review_requested"
    REVIEW_DECIDED = "review.decided"
    #: Declared for subscriptions; delivered once the pipeline publishes these changes.
    KYC_UPDATED = "kyc.updated"
    WALLET_STATUS_CHANGED = "wallet.status_changed"


@dataclass(frozen=True)
class WebhookEvent:
    """One event for the subscribers of ``client_id`` (None: the service looks the client up
    by ``transaction_id``, e.g. for a review decision, whose record names no client)."""

    event_id: uuid.UUID
    event_type: EventType
    client_id: uuid.UUID | None
    transaction_id: uuid.UUID | None
    occurred_at: str
    data: dict[str, Any] = field(hash=False)

    def body(self) -> bytes:
        """What is sent and signed: the same bytes at every attempt."""
        return orjson.dumps(
            {
                "id": str(self.event_id),
                "type": self.event_type.value,
                "occurred_at": self.occurred_at,
                "data": self.data,
            }
        )


def event_id_of(event_type: EventType, subject: object) -> uuid.UUID:
    """The stable id of the event ``event_type`` about ``subject`` (a transaction id)."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{event_type.value}:{subject}")


#: The fields of a transaction's record a client sees in its events (those of
#: ``GET /v1/transactions/{id}``); the rest (IP, user agent, model scores) stay inside.
_TRANSACTION_FIELDS = (
    "transaction_id",
    "transaction_type",
    "source_wallet_id",
    "destination_wallet_id",
    "amount",
    "fee_amount",
    "total_amount",
    "currency_code",
    "description",
    "idempotency_key",
    "metadata",
    "requested_at",
)


def _transaction(
    record: Mapping[str, Any], event_type: EventType, at: str, **extra: Any
) -> WebhookEvent:
    data = {name: record.get(name) for name in _TRANSACTION_FIELDS}
    data.update(extra)
    return WebhookEvent(
        event_id=event_id_of(event_type, record["transaction_id"]),
        event_type=event_type,
        client_id=uuid.UUID(str(record["client_id"])),
        transaction_id=uuid.UUID(str(record["transaction_id"])),
        occurred_at=at,
        data=data,
    )


def _posted(r: Mapping[str, Any]) -> WebhookEvent:
    return _transaction(
        r,
        EventType.TRANSACTION_COMPLETED,
        r["completed_at"],
        status="COMPLETED",
        captured_amount=r.get("captured_amount"),
        completed_at=r["completed_at"],
    )


def _failed(r: Mapping[str, Any]) -> WebhookEvent:
    return _transaction(
        r,
        EventType.TRANSACTION_FAILED,
        r["failed_at"],
        status="FAILED",
        reason_code=r["reason_code"],
        reason_message=r["reason_message"],
        failed_at=r["failed_at"],
    )


def _rejected(r: Mapping[str, Any]) -> WebhookEvent:
    # The stream declined it: to the client the same outcome as a ledger failure (the
    # ledger records it FAILED too), under the same event id.
    return _transaction(
        r,
        EventType.TRANSACTION_FAILED,
        r["decided_at"],
        status="FAILED",
        reason_code=r["reason_code"],
        reason_message=r["reason_message"],
        failed_at=r["decided_at"],
    )


def _review_requested(r: Mapping[str, Any]) -> WebhookEvent:
    return _transaction(
        r,
        EventType.TRANSACTION_REVIEW_REQUESTED,
        r["decided_at"],
        status="PENDING",
        review_deadline=r["review_deadline"],
    )


def _review_decided(r: Mapping[str, Any]) -> WebhookEvent:
    return WebhookEvent(
        event_id=event_id_of(EventType.REVIEW_DECIDED, r["transaction_id"]),
        event_type=EventType.REVIEW_DECIDED,
        client_id=None,
        transaction_id=uuid.UUID(str(r["transaction_id"])),
        occurred_at=r["decided_at"],
        data={
            "transaction_id": r["transaction_id"],
            "decision": r["decision"],
            "decided_at": r["decided_at"],
        },
    )


#: Record ``kind`` → its event. A new event source is one entry here (and its topic in
#: ``notifications.settings``); records of other kinds are not events.
EVENT_OF_KIND: dict[str, Callable[[Mapping[str, Any]], WebhookEvent]] = {
    "TransactionPosted": _posted,
    "TransactionFailed": _failed,
    "TransactionRejected": _rejected,
    "ReviewRequested": _review_requested,
    "ReviewDecided": _review_decided,
}


def event_of(record: Mapping[str, Any]) -> WebhookEvent | None:
    """The event a decoded record (``Record.model_dump(mode="json")``) announces, if any."""
    make = EVENT_OF_KIND.get(str(record.get("kind")))
    return None if make is None else make(record)


# -- signatures ---------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp_s: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp_s``."""
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return f"t={timestamp_s},v1={mac.hexdigest()}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    now_s: float,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
) -> bool:
    """What a receiver does: the signature matches and is at most ``tolerance_s`` old."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp_s = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now_s - timestamp_s) > tolerance_s:
        return False
    expected = sign(secret, timestamp_s, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


# -- retries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt n (1, 2, ...) failed: the next waits ``base_s * 2**(n-1)``, at most
    ``delay_max_s``, less up to ``jitter`` of it at random (endpoints that failed together
    are not retried in step). No attempt starts later than ``window_s`` after the first:
    the delivery is dead-lettered instead."""

    base_s: float = 10.0
    delay_max_s: float = 3_600.0
    window_s: float = 86_400.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.delay_max_s or not 0 <= self.jitter < 1:
            raise WebhookError("retries need 0 < base <= delay max and 0 <= jitter < 1")

    def next_attempt_at(
        self, attempts: int, first_attempt_at: datetime, now: datetime, rng: random.Random
    ) -> datetime | None:
        """When to try again after ``attempts`` failed attempts; None: dead-letter it."""
        delay = min(self.delay_max_s, self.base_s * 2 ** min(attempts - 1, 64))
        delay *= 1 - self.jitter * rng.random()
        at = now + timedelta(seconds=delay)
        if at > first_attempt_at + timedelta(seconds=self.window_s):
            return None
        return at


# -- endpoints ----------------------------------------------------------------------------

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses an endpoint may resolve to: public (global) ones, loopback when
    ``allow_loopback`` (tests, a local receiver), and the operator's ``allowed_networks``.
    Everything else (private ranges, link-local with cloud metadata, multicast, reserved) is
    refused, so a subscriber cannot make the service call into the internal network."""

    allow_loopback: bool = False
    allowed_networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, allow_loopback: bool, networks: str) -> AddressPolicy:
        try:
            parsed = tuple(
                ipaddress.ip_network(n.strip(), strict=False)
                for n in networks.split(",")
                if n.strip()
            )
        except ValueError as error:
            raise WebhookError(f"WEBHOOK_ALLOWED_NETWORKS: {error}") from None
        return cls(allow_loopback, parsed)

    def endpoint(self, url: str) -> Endpoint:
        """The URL's scheme, host and port, or ``EndpointRefused``."""
        if len(url) > URL_LENGTH_MAX:
            raise EndpointRefused(f"an endpoint URL has at most {URL_LENGTH_MAX} characters")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EndpointRefused("an endpoint is an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise EndpointRefused("an endpoint URL carries no user or password")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise EndpointRefused("the endpoint's port is not a number from 1 to 65535") from None
        return Endpoint(parts.scheme, parts.hostname, port)

    def allows(self, address: IpAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed_networks):
            return True
        if address.is_loopback:
            return self.allow_loopback
        return address.is_global and not address.is_multicast

    def check(self, host: str, addresses: Iterable[str]) -> list[IpAddress]:
        """Every address ``host`` resolved to must be allowed (one bad answer among good
        ones is how DNS rebinding gets in); returns them, or raises ``EndpointRefused``."""
        parsed = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
        if not parsed:
            raise EndpointRefused(f"{host} does not resolve to any address")
        refused = [str(a) for a in parsed if not self.allows(a)]
        if refused:
            raise EndpointRefused(
                f"{host} resolves to {', '.join(refused)}, which this service may not call"
            )
        return parsed

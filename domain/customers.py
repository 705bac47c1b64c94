"""Rules of the customers' side of the wallet: wallet status changes, statement cursors,
identity documents. Pure: no I/O.

>>> check_status_change("ACTIVE", "FROZEN", Decimal("5"))
>>> decode_cursor(encode_cursor(datetime(2026, 1, 2, tzinfo=UTC), UUID(int=7)))[1]
UUID('00000000-0000-0000-0000-000000000007')
>>> sniff_document(b"%PDF-1.7 ...")
'application/pdf'
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from domain.exceptions import DomainError
from domain.transactions import WalletStatus


class DocumentType(StrEnum):
    PASSPORT = "PASSPORT"
    DRIVERS_LICENSE = "DRIVERS_LICENSE"
    ID_CARD = "ID_CARD"


class DeviceType(StrEnum):
    ANDROID = "ANDROID"
    IOS = "IOS"
    WEB = "WEB"


class AddressType(StrEnum):
    RESIDENTIAL = "RESIDENTIAL"
    BUSINESS = "BUSINESS"
    MAILING = "MAILING"


#: The largest identity document accepted (bytes).
DOCUMENT_BYTES_MAX = 10 * 1024 * 1024
#: What a document's first bytes say it is; its name and declared type are not trusted.
_DOCUMENT_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)
DOCUMENT_TYPES = tuple(content_type for _magic, content_type in _DOCUMENT_MAGIC)


def sniff_document(data: bytes) -> str | None:
    """The document's content type from its bytes (PDF, JPEG or PNG), or None."""
    for magic, content_type in _DOCUMENT_MAGIC:
        if data.startswith(magic):
            return content_type
    return None


#: The statuses a caller may ask for (SUSPENDED is the seed schema's, set by nobody).
SETTABLE_STATUSES = frozenset({WalletStatus.ACTIVE, WalletStatus.FROZEN, WalletStatus.CLOSED})


def check_status_change(current: str, wanted: str, posted_balance: Decimal) -> None:
    """Whether a wallet may go from ``current`` to ``wanted``; ``posted_balance`` is what the
    ledger holds for it (available + reserved + pending). A closed wallet stays closed, and
    only an empty wallet closes (its money would be stranded)."""
    if wanted not in SETTABLE_STATUSES:
        raise DomainError(
            f"a wallet's status is one of {', '.join(sorted(SETTABLE_STATUSES))}",
            code="INVALID_FIELD",
        )
    if current == WalletStatus.CLOSED:
        raise DomainError(
            "the wallet is closed; a closed wallet stays closed", code="WALLET_CLOSED"
        )
    if wanted == WalletStatus.CLOSED and posted_balance != 0:
        raise DomainError(
            f"the wallet holds {posted_balance}: only an empty wallet closes "
            "(withdraw or transfer the money first)",
            code="WALLET_NOT_EMPTY",
        )


def encode_cursor(created_at: datetime, transaction_id: UUID) -> str:
    """An opaque position in a statement: the last entry a page showed."""
    text = f"{created_at.astimezone(UTC).isoformat()}|{transaction_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, transaction_id = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when, UUID(transaction_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise DomainError(
            "cursor is not one this API gave (send next_cursor as it came)", code="INVALID_CURSOR"
        ) from None

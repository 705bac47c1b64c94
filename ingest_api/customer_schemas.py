"""Bodies of the customer routes: users, addresses, devices, KYC documents, wallet status
and statements. Unknown fields are refused, like every body of the API."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field

from domain.customers import AddressType, DeviceType, DocumentType
from domain.inputs import FreeText, MaskedText, PlainText
from ingest_api.schemas import Strict

_COUNTRY = r"^[A-Z]{2}$"


class UserDetailOut(BaseModel):
    user_id: uuid.UUID
    email: str
    phone_number: str
    first_name: str
    last_name: str
    date_of_birth: date
    status: str
    kyc_status: str
    created_at: datetime
    updated_at: datetime


class UpdateUser(Strict):
    """Only the fields sent change; at least one."""

    email: PlainText | None = Field(
        default=None, min_length=3, max_length=255, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    )
    phone_number: PlainText | None = Field(
        default=None, min_length=5, max_length=20, pattern=r"^\+?[0-9][0-9 \-]{3,19}$"
    )
    first_name: FreeText | None = Field(default=None, min_length=1, max_length=100)
    last_name: FreeText | None = Field(default=None, min_length=1, max_length=100)


class CreateAddress(Strict):
    address_type: AddressType = AddressType.RESIDENTIAL
    address_line1: FreeText = Field(min_length=1, max_length=255)
    address_line2: FreeText | None = Field(default=None, max_length=255)
    city: FreeText = Field(min_length=1, max_length=100)
    state: FreeText = Field(min_length=1, max_length=100)
    postal_code: PlainText = Field(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9 \-]+$")
    country: str = Field(pattern=_COUNTRY)
    is_primary: bool = False


class AddressOut(BaseModel):
    address_id: uuid.UUID
    user_id: uuid.UUID
    address_type: str
    address_line1: str
    address_line2: str | None
    city: str
    state: str
    postal_code: str
    country: str
    is_verified: bool
    is_primary: bool
    created_at: datetime


class UserWalletOut(BaseModel):
    wallet_id: uuid.UUID
    wallet_type: str
    currency_code: str
    status: str
    created_at: datetime


class ChangeWalletStatus(Strict):
    status: str = Field(json_schema_extra={"enum": ["ACTIVE", "FROZEN", "CLOSED"]})
    #: Why: kept in the audit trail with who asked and when.
    reason: MaskedText = Field(min_length=1, max_length=1000)


class WalletStatusOut(BaseModel):
    wallet_id: uuid.UUID
    status: str
    previous_status: str
    changed_by: str
    reason: str
    changed_at: datetime


class StatusChangeOut(BaseModel):
    from_status: str
    to_status: str
    changed_by: str
    reason: str
    changed_at: datetime


class StatementEntry(BaseModel):
    transaction_id: uuid.UUID
    transaction_type: str
    status: str
    #: DEBIT (money left this wallet), CREDIT, or null for a transaction that moved nothing.
    direction: str | None
    amount: str
    fee_amount: str
    total_amount: str
    currency_code: str
    description: str | None
    counterparty_wallet_id: uuid.UUID | None
    #: The wallet's posted balance after this transaction's entry; null when it has none
    #: (FAILED, or still PENDING).
    balance_after: str | None
    created_at: datetime
    completed_at: datetime | None


class StatementOut(BaseModel):
    wallet_id: uuid.UUID
    entries: list[StatementEntry]
    #: Pass as ``cursor`` for the next (older) page; null on the last page.
    next_cursor: str | None


class RegisterDevice(Strict):
    device_type: DeviceType
    #: The push token of the app install (FCM/APNs) or a web fingerprint.
    device_token: PlainText | None = Field(default=None, max_length=255)
    device_name: FreeText | None = Field(default=None, max_length=100)


class DeviceOut(BaseModel):
    device_id: uuid.UUID
    user_id: uuid.UUID
    device_type: str
    device_name: str | None
    status: str
    last_used_at: datetime
    created_at: datetime
    revoked_at: datetime | None


class DocumentOut(BaseModel):
    document_id: uuid.UUID
    user_id: uuid.UUID
    document_type: DocumentType
    issuing_country: str
    issue_date: date
    expiry_date: date
    verification_status: str
    verification_notes: str | None
    content_type: str
    size_bytes: int
    created_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None


class DecideDocument(Strict):
    #: Why: kept on the document; required for a rejection.
    reason: MaskedText | None = Field(default=None, min_length=1, max_length=1000)


class KycDecisionOut(BaseModel):
    document: DocumentOut
    user_id: uuid.UUID
    kyc_status: str

"""Request and response bodies. Unknown fields are refused (``extra="forbid"``)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.transactions import TransactionType, WalletType


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateUser(Strict):
    email: str = Field(min_length=3, max_length=255, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone_number: str = Field(min_length=5, max_length=20, pattern=r"^\+?[0-9][0-9 \-]{3,19}$")
    password: str = Field(min_length=8, max_length=200)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    date_of_birth: date


class UserOut(BaseModel):
    user_id: uuid.UUID
    email: str
    status: str
    kyc_status: str
    created_at: datetime


class CreateWallet(Strict):
    user_id: uuid.UUID
    wallet_type: WalletType = WalletType.PRIMARY
    currency_code: str = Field(min_length=3, max_length=3)


class WalletOut(BaseModel):
    wallet_id: uuid.UUID
    user_id: uuid.UUID
    wallet_type: str
    currency_code: str
    status: str
    created_at: datetime


class BalanceOut(BaseModel):
    wallet_id: uuid.UUID
    currency_code: str
    available: str
    pending: str
    reserved: str
    last_updated_at: datetime


class CreateTransaction(Strict):
    transaction_type: TransactionType
    source_wallet_id: uuid.UUID | None = None
    destination_wallet_id: uuid.UUID | None = None
    #: A decimal string; typed loosely here so a JSON number gets the precise INVALID_AMOUNT.
    amount: Any
    currency_code: str = Field(min_length=3, max_length=3)
    description: str | None = Field(default=None, max_length=1000)
    external_reference_id: str | None = Field(default=None, max_length=255)
    #: Channel facts for fraud scoring: channel, terminal_id, device_id, merchant_id, ...
    metadata: dict[str, str | int | bool | None] = Field(default_factory=dict, max_length=32)


class TransactionAccepted(BaseModel):
    transaction_id: uuid.UUID
    transaction_status: str
    status: str
    transaction_type: str
    amount: str
    fee_amount: str
    total_amount: str
    currency_code: str
    created_at: datetime


class TransactionEventOut(BaseModel):
    event_type: str
    event_status: str
    error_code: str | None
    error_message: str | None
    created_at: datetime
    #: What the step moved, e.g. ``held`` (AUTHORIZED of a two-phase payment: the amount now
    #: reserved), ``captured`` and ``released`` (SETTLED), ``released`` (FAILED after a hold).
    event_data: dict[str, Any] | None = None


class TransactionOut(BaseModel):
    transaction_id: uuid.UUID
    transaction_type: str
    transaction_status: str
    status: str
    source_wallet_id: uuid.UUID | None
    destination_wallet_id: uuid.UUID | None
    amount: str
    fee_amount: str
    total_amount: str
    currency_code: str
    description: str | None
    risk_score: str | None
    failure_code: str | None
    failure_reason: str | None
    created_at: datetime
    completed_at: datetime | None
    events: list[TransactionEventOut]


class CreateGrant(Strict):
    client_id: uuid.UUID


class GrantOut(BaseModel):
    wallet_id: uuid.UUID
    client_id: uuid.UUID
    created_at: datetime

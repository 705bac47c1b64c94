"""Request and response bodies. Unknown fields are refused (``extra="forbid"``).

Every field a caller sends is typed with its rule (domain/inputs.py): ids in canonical
form, text without control characters (descriptions, references and metadata masked of card
numbers and IBANs), metadata within bounds, amounts in the one grammar of domain/money.py.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from domain.inputs import (
    UUID_PATTERN,
    AmountText,
    CanonicalUuid,
    FreeText,
    MaskedText,
    Metadata,
    PlainText,
)
from domain.money import CURRENCY_EXPONENTS
from domain.transactions import TransactionType, WalletType

#: The currencies the wallet holds, stated in the schema; another 3-letter code still
#: answers UNSUPPORTED_CURRENCY (not a schema error) as it always has.
CURRENCY_SCHEMA = {"enum": sorted(CURRENCY_EXPONENTS)}
BIRTH_DATE_MIN = date(1900, 1, 1)


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def _iso_date(value: object) -> object:
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise ValueError("must be a date written YYYY-MM-DD")


def _a_birth_date(value: date) -> date:
    if not BIRTH_DATE_MIN <= value <= date.today():
        raise ValueError(f"a date of birth is between {BIRTH_DATE_MIN} and today")
    return value


#: An ISO date (YYYY-MM-DD) only, no timestamps, from 1900 to today.
BirthDate = Annotated[
    date,
    BeforeValidator(_iso_date),
    AfterValidator(_a_birth_date),
    WithJsonSchema({"type": "string", "format": "date"}),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateUser(Strict):
    email: PlainText = Field(min_length=3, max_length=255, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone_number: PlainText = Field(
        min_length=5, max_length=20, pattern=r"^\+?[0-9][0-9 \-]{3,19}$"
    )
    password: FreeText = Field(min_length=8, max_length=200)
    first_name: FreeText = Field(min_length=1, max_length=100)
    last_name: FreeText = Field(min_length=1, max_length=100)
    date_of_birth: BirthDate


class UserOut(BaseModel):
    user_id: uuid.UUID
    email: str
    status: str
    kyc_status: str
    created_at: datetime


class CreateWallet(Strict):
    user_id: CanonicalUuid
    wallet_type: WalletType = WalletType.PRIMARY
    currency_code: str = Field(min_length=3, max_length=3, json_schema_extra=CURRENCY_SCHEMA)


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


#: Which wallets each type names (domain.transactions.check_wallets), stated in the schema;
#: a request that breaks it still answers INVALID_TRANSACTION, not a schema error.
_WALLET_ID = {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}
_NO_WALLET = {"type": "null"}
WALLETS_BY_TYPE_SCHEMA = {
    "anyOf": [
        {
            "properties": {
                "transaction_type": {"const": "DEPOSIT"},
                "source_wallet_id": _NO_WALLET,
                "destination_wallet_id": _WALLET_ID,
            },
            "required": ["destination_wallet_id"],
        },
        {
            "properties": {
                "transaction_type": {"const": "WITHDRAWAL"},
                "source_wallet_id": _WALLET_ID,
                "destination_wallet_id": _NO_WALLET,
            },
            "required": ["source_wallet_id"],
        },
        {
            "properties": {
                "transaction_type": {"enum": ["TRANSFER", "PAYMENT"]},
                "source_wallet_id": _WALLET_ID,
                "destination_wallet_id": _WALLET_ID,
            },
            "required": ["source_wallet_id", "destination_wallet_id"],
        },
    ]
}


class CreateTransaction(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=WALLETS_BY_TYPE_SCHEMA)

    transaction_type: TransactionType
    source_wallet_id: CanonicalUuid | None = None
    destination_wallet_id: CanonicalUuid | None = None
    #: A decimal string; anything else (a JSON number too) answers INVALID_AMOUNT.
    amount: AmountText
    currency_code: str = Field(min_length=3, max_length=3, json_schema_extra=CURRENCY_SCHEMA)
    description: MaskedText | None = Field(default=None, max_length=1000)
    external_reference_id: MaskedText | None = Field(default=None, max_length=255)
    #: Channel facts for fraud scoring: channel, terminal_id, device_id, merchant_id, ...
    metadata: Metadata = Field(default_factory=dict, max_length=32)


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


class TransactionEnded(TransactionAccepted):
    """The final state, answered to ``Prefer: wait=N`` when the transaction ends in time."""

    risk_score: str | None
    failure_code: str | None
    failure_reason: str | None
    completed_at: datetime | None
    #: A two-phase payment's captured amount (null: the whole amount moved, or it failed).
    captured_amount: str | None


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
    client_id: CanonicalUuid


class GrantOut(BaseModel):
    wallet_id: uuid.UUID
    client_id: uuid.UUID
    created_at: datetime


class ErrorDetail(BaseModel):
    #: Stable: callers branch on it (README, "The HTTP API", lists every code).
    code: str
    message: str


class ErrorOut(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail

"""Transaction types, statuses, fees and the double-entry postings each type makes.

One rule covers every type: the *payer* pays ``total = amount + fee``, the *payee* receives
``amount`` and the fee revenue account receives ``fee``. The payer is the source wallet, or
the external clearing account when money comes from outside (a deposit); the payee is the
destination wallet, or the external clearing account when money leaves (a withdrawal, a
payment to an outside merchant). So every transaction's entries sum to zero, and so does the
sum over all accounts.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from domain.exceptions import InvalidTransaction
from domain.ids import with_text
from domain.money import ZERO, round_to_currency, to_storage


class TransactionType(StrEnum):
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    TRANSFER = "TRANSFER"
    PAYMENT = "PAYMENT"


class TransactionStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REVERSED = "REVERSED"


class EventType(StrEnum):
    INITIATED = "INITIATED"
    AUTHORIZED = "AUTHORIZED"
    SETTLED = "SETTLED"
    FAILED = "FAILED"
    REVERSED = "REVERSED"


class EventStatus(StrEnum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    PENDING = "PENDING"


class EntryType(StrEnum):
    DEBIT = "DEBIT"
    CREDIT = "CREDIT"


class WalletType(StrEnum):
    PRIMARY = "PRIMARY"
    SAVINGS = "SAVINGS"
    BUSINESS = "BUSINESS"


class WalletStatus(StrEnum):
    """ACTIVE moves money both ways; FROZEN receives credits but the stream refuses its
    debits (``WALLET_FROZEN``); CLOSED (only when empty) moves nothing. SUSPENDED is the
    seed schema's older state, refused everywhere like CLOSED."""

    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


#: Wallet states the API and the ledger let money reach (a frozen wallet's debits are
#: refused by the stream, in the wallet's own order, and its credits still land).
MONEY_STATES = frozenset({WalletStatus.ACTIVE.value, WalletStatus.FROZEN.value})


class RejectReason(StrEnum):
    """Stable reason codes of a declined or failed transaction."""

    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    DUPLICATE = "DUPLICATE"
    WALLET_NOT_FOUND = "WALLET_NOT_FOUND"
    WALLET_NOT_ACTIVE = "WALLET_NOT_ACTIVE"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    INVALID_TRANSACTION = "INVALID_TRANSACTION"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    FRAUD_DECLINED = "FRAUD_DECLINED"
    #: The wallet is frozen: its debits are refused, its credits still land.
    WALLET_FROZEN = "WALLET_FROZEN"
    #: A deposit's or withdrawal's ``metadata.payment_method_id`` is not a usable method of
    #: the user of the right kind (a card to deposit from, a bank account to withdraw to).
    PAYMENT_METHOD_INVALID = "PAYMENT_METHOD_INVALID"
    #: The ledger read a command after its ``expires_at``: the stream has released (or will
    #: release) its hold, so the ledger must not move its money.
    COMMAND_EXPIRED = "COMMAND_EXPIRED"


#: Which wallet a type needs: (source required, destination required, destination allowed).
_WALLET_RULES: dict[TransactionType, tuple[bool, bool, bool]] = {
    TransactionType.DEPOSIT: (False, True, True),
    TransactionType.WITHDRAWAL: (True, False, False),
    TransactionType.TRANSFER: (True, True, True),
    TransactionType.PAYMENT: (True, False, True),
}


def check_wallets(
    transaction_type: TransactionType,
    source_wallet_id: uuid.UUID | None,
    destination_wallet_id: uuid.UUID | None,
) -> None:
    """Mirror of the seed's ``check_wallet_ids`` constraint, plus no self-transfer."""
    source_required, destination_required, destination_allowed = _WALLET_RULES[transaction_type]
    if transaction_type is TransactionType.DEPOSIT and source_wallet_id is not None:
        raise InvalidTransaction("a DEPOSIT comes from outside: omit source_wallet_id")
    if source_required and source_wallet_id is None:
        raise InvalidTransaction(f"a {transaction_type} needs source_wallet_id")
    if destination_required and destination_wallet_id is None:
        raise InvalidTransaction(f"a {transaction_type} needs destination_wallet_id")
    if not destination_allowed and destination_wallet_id is not None:
        raise InvalidTransaction(f"a {transaction_type} goes outside: omit destination_wallet_id")
    if source_wallet_id is not None and source_wallet_id == destination_wallet_id:
        raise InvalidTransaction("source and destination are the same wallet")


def first_moving_wallet(
    source_wallet_id: uuid.UUID | None, destination_wallet_id: uuid.UUID | None
) -> uuid.UUID:
    """The wallet whose money moves first: the partition key of every record of a transaction."""
    wallet = source_wallet_id or destination_wallet_id
    if wallet is None:
        raise InvalidTransaction("a transaction needs at least one wallet")
    return wallet


@dataclass(frozen=True)
class Fee:
    """A fee: ``basis_points`` of the amount plus a ``fixed`` part, rounded to the currency."""

    basis_points: int = 0
    fixed: Decimal = ZERO

    def for_amount(self, amount: Decimal, currency_code: str) -> Decimal:
        variable = amount * self.basis_points / Decimal(10_000)
        return round_to_currency(variable + self.fixed, currency_code)


@dataclass(frozen=True)
class FeeSchedule:
    """Fees by transaction type; a type that is not listed is free."""

    fees: dict[TransactionType, Fee] = field(default_factory=dict)

    def fee_for(self, transaction_type: TransactionType, amount: Decimal, currency: str) -> Decimal:
        fee = self.fees.get(transaction_type)
        return ZERO if fee is None else fee.for_amount(amount, currency)

    @classmethod
    def parse(cls, spec: dict[str, dict[str, object]]) -> FeeSchedule:
        """Build from settings, e.g. ``{"WITHDRAWAL": {"basis_points": 50, "fixed": "1.00"}}``."""
        fees = {}
        for type_name, fee in spec.items():
            fees[TransactionType(type_name)] = Fee(
                basis_points=int(fee.get("basis_points", 0)),  # type: ignore[call-overload]
                fixed=to_storage(Decimal(str(fee.get("fixed", "0")))),
            )
        return cls(fees)


# System accounts: wallets of one system user, one per purpose and currency. Their ids are
# derived (uuid5), so every service and every shard names them the same way without a lookup.
SYSTEM_USER_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
_SYSTEM_NAMESPACE = uuid.UUID("6f1c3e0a-4b7e-4d7a-9c1e-2b9f5a7d0c11")


class SystemAccount(StrEnum):
    EXTERNAL_CLEARING = "EXTERNAL_CLEARING"
    FEE_REVENUE = "FEE_REVENUE"


@functools.cache  # a handful of (account, currency) pairs; uuid5 is slow on the ledger's path
def system_wallet_id(account: SystemAccount, currency_code: str) -> uuid.UUID:
    return with_text(uuid.uuid5(_SYSTEM_NAMESPACE, f"{account}:{currency_code}"))


class Posting(NamedTuple):
    """One ledger entry to be written: a debit or credit of a positive amount on a wallet.
    A named tuple: the ledger makes two or three per transfer, and a frozen dataclass costs
    several times as much to build."""

    wallet_id: uuid.UUID
    entry_type: EntryType
    amount: Decimal

    @property
    def signed(self) -> Decimal:
        """Credits raise a balance, debits lower it."""
        return self.amount if self.entry_type is EntryType.CREDIT else -self.amount


def postings_for(
    transaction_type: TransactionType,
    source_wallet_id: uuid.UUID | None,
    destination_wallet_id: uuid.UUID | None,
    amount: Decimal,
    fee_amount: Decimal,
    currency_code: str,
) -> list[Posting]:
    """The balanced entries of one transaction (see the module docstring for the rule)."""
    clearing = system_wallet_id(SystemAccount.EXTERNAL_CLEARING, currency_code)
    payer = source_wallet_id if transaction_type is not TransactionType.DEPOSIT else clearing
    payee = destination_wallet_id or clearing
    if payer is None:
        raise InvalidTransaction(f"a {transaction_type} needs source_wallet_id")
    postings = [
        Posting(payer, EntryType.DEBIT, amount + fee_amount),
        Posting(payee, EntryType.CREDIT, amount),
    ]
    if fee_amount > 0:
        fee_account = system_wallet_id(SystemAccount.FEE_REVENUE, currency_code)
        postings.append(Posting(fee_account, EntryType.CREDIT, fee_amount))
    return postings

"""Reversals (refunds): how a reversal of a completed transaction is typed and recorded.

The seed's schema knows four transaction types and its ``check_wallet_ids`` constraint ties
each to its wallets, so a reversal is recorded as the *mirror* of the original, a
transaction of its own (its own id, events and entries), tagged ``metadata.reversal_of``
(and ``external_reference_id``) with the original's id:

=====================================  ==================================================
original                               reversal (money flows back)
=====================================  ==================================================
DEPOSIT into D                         WITHDRAWAL from D (to external clearing)
WITHDRAWAL from S                      DEPOSIT into S (from external clearing)
PAYMENT from S to outside              DEPOSIT into S (from external clearing)
PAYMENT from S to M, TRANSFER S → M    TRANSFER M → S
=====================================  ==================================================

The reversal carries no fee and refunds none: at most the amount that moved (the captured
amount of a partially captured payment) can be reversed, in one or several parts; the
original becomes REVERSED once all of it is. ``ledger_reversals`` records each part.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum

from domain.transactions import TransactionType

#: Metadata key naming the original of a reversal.
REVERSAL_OF = "reversal_of"


class ReversalReason:
    """Reason codes of a refused reversal."""

    NOT_REVERSIBLE = "TRANSACTION_NOT_REVERSIBLE"
    EXCEEDS_ORIGINAL = "REVERSAL_EXCEEDS_ORIGINAL"
    MISMATCH = "REVERSAL_MISMATCH"
    #: The payer's side asked to reverse money that another client's wallet pays back.
    REQUEST_REQUIRED = "REFUND_REQUEST_REQUIRED"


def mirror(
    transaction_type: TransactionType,
    source_wallet_id: uuid.UUID | None,
    destination_wallet_id: uuid.UUID | None,
) -> tuple[TransactionType, uuid.UUID | None, uuid.UUID | None]:
    """(type, source, destination) of the reversal of a transaction (see the table above)."""
    if transaction_type is TransactionType.DEPOSIT:
        return TransactionType.WITHDRAWAL, destination_wallet_id, None
    if destination_wallet_id is None:  # a withdrawal, or a payment to outside
        return TransactionType.DEPOSIT, None, source_wallet_id
    return TransactionType.TRANSFER, destination_wallet_id, source_wallet_id


def reversal_of(metadata: Mapping[str, object]) -> uuid.UUID | None:
    """The original's id if these are a reversal's metadata; None otherwise (or if garbled)."""
    value = metadata.get(REVERSAL_OF)
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class RefundRoute(StrEnum):
    """How a client may get a transaction's money back (``refund_route``)."""

    REVERSE = "reverse"  # reverse it directly: the caller is in charge of who pays back
    REQUEST = "request"  # ask the payee: a refund request, granted or refused by its client
    NONE = "none"  # the caller has nothing to do with this transaction


def refund_route(
    reversal_source: uuid.UUID | None,
    controls_reversal_source: bool,
    controls_reversal_destination: bool,
    submitted_original: bool,
) -> RefundRoute:
    """Only the wallet that pays back moves its money: a reversal that debits a wallet
    needs the client in charge of that wallet (its owner's, or one it granted); a reversal
    from outside (a DEPOSIT back) needs the client of the wallet it credits, as any
    deposit does. The payer's side (who submitted the original, or is in charge of the
    wallet that paid) may otherwise only request a refund from the payee."""
    if reversal_source is not None and controls_reversal_source:
        return RefundRoute.REVERSE
    if reversal_source is None and controls_reversal_destination:
        return RefundRoute.REVERSE
    if submitted_original or controls_reversal_destination:
        return RefundRoute.REQUEST if reversal_source is not None else RefundRoute.NONE
    return RefundRoute.NONE

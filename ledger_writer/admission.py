"""What the ledger can store, checked for each input before its batch is planned. Pure.

A record can be well-formed and still hold a value PostgreSQL or the writer's encoders
refuse: a NUL character in any text (TEXT, VARCHAR and JSONB alike), an integer in metadata
beyond 64 bits (orjson writes the JSONB and stops there), a risk score beyond DECIMAL(5,2),
an external reference longer than its VARCHAR(255), a control character in a field the COPY
text carries unescaped, amounts or wallets the ``transactions`` CHECKs refuse. Found at COPY
time, any of these fails the whole batch's transaction, and again after every restart: one
record would stop every payment. Found here, it fails only its own transaction.

``problem(item)`` names what cannot be stored (None: everything can). ``storable(item)`` is
the copy of a transaction's facts the ledger records it FAILED with: text cleaned, metadata
entries that cannot be stored left out, an unstorable risk score dropped. The record itself
goes to the dead-letter topic unchanged.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain.exceptions import UnprocessableRecord
from domain.records import (
    CreditFromShard,
    GatewayResponded,
    PostTransaction,
    TransactionFacts,
    TransactionRejected,
)
from domain.transactions import TransactionType

#: The reason code of a transaction whose record the ledger could not store.
UNPROCESSABLE_RECORD = UnprocessableRecord.code

#: What orjson writes as a JSON integer (it refuses anything wider).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
#: DECIMAL(5,2) rounds to two places, so 999.995 would round past its 999.99.
_RISK_SCORE_LIMIT = Decimal("999.995")
#: transactions.external_reference_id is VARCHAR(255).
_EXTERNAL_REFERENCE_MAX = 255
#: Which wallets each type's row must name (the seed's check_wallet_ids): source, destination.
_ROW_WALLETS = {
    TransactionType.DEPOSIT: (False, True),
    TransactionType.WITHDRAWAL: (True, False),
    TransactionType.TRANSFER: (True, True),
    TransactionType.PAYMENT: (True, False),
}
_REASON_TEXT_MAX = 200
#: Compared with a Decimal, a Decimal zero is several times cheaper than the int 0.
_ZERO = Decimal(0)


def problem(
    item: PostTransaction | TransactionRejected | GatewayResponded | CreditFromShard,
) -> UnprocessableRecord | None:
    """What of ``item`` the ledger cannot store, or None."""
    if isinstance(item, GatewayResponded):
        # Only a refusal's message is written (as the FAILED event's text).
        if item.outcome != "CAPTURED" and _bad_text(item.reason_message):
            return UnprocessableRecord("reason_message holds a character PostgreSQL refuses")
        return None
    found = None if _plain(item.__dict__) else _row_problem(item) or _text_problem(item)
    if found is None and isinstance(item, TransactionRejected):
        if not _is_code(item.reason_code):
            found = UnprocessableRecord("reason_code holds a control or non-ASCII character")
        elif _bad_text(item.reason_message):
            found = UnprocessableRecord("reason_message holds a character PostgreSQL refuses")
    return found


def _row_problem(item: TransactionFacts) -> UnprocessableRecord | None:
    """What makes even a FAILED row of the transaction break the table's CHECKs."""
    if not (item.amount > 0 and item.fee_amount >= 0):
        return _no_row("amount must be > 0 and fee_amount >= 0")
    if item.total_amount != item.amount + item.fee_amount:
        return _no_row("total_amount is not amount + fee_amount")
    source, destination = item.source_wallet_id, item.destination_wallet_id
    source_required, destination_required = _ROW_WALLETS[item.transaction_type]
    if (source_required and source is None) or (destination_required and destination is None):
        return _no_row(f"a {item.transaction_type.value} lacks a wallet its row needs")
    if source is not None and source == destination:
        return _no_row("source and destination are the same wallet")
    if not _is_code(item.currency_code):
        return _no_row("currency_code holds a control or non-ASCII character")
    return None


def _plain(values: dict[str, Any]) -> bool:
    """The common case, cheaply, in one pass over a record's fields: its row fits the
    table's CHECKs, and every stored text (metadata keys and values too) taken together is
    ASCII without NUL, every metadata integer fits, the external reference and the risk
    score fit their columns. False sends the record to the checks that name what is wrong,
    if anything (``_row_problem``, ``_text_problem``)."""
    amount, fee = values["amount"], values["fee_amount"]
    source, destination = values["source_wallet_id"], values["destination_wallet_id"]
    needs_source, needs_destination = _ROW_WALLETS[values["transaction_type"]]
    if (
        not (amount > _ZERO and fee >= _ZERO and values["total_amount"] == amount + fee)
        or (needs_source and source is None)
        or (needs_destination and destination is None)
        or (source is not None and source == destination)
    ):
        return False
    currency, metadata = values["currency_code"], values["metadata"]
    texts = [values["idempotency_key"], currency]
    for name in ("description", "ip_address", "user_agent"):
        if values[name] is not None:
            texts.append(values[name])
    for key, value in metadata.items():
        kind = type(value)
        if type(key) is not str or (kind is int and not _INT_MIN <= value <= _INT_MAX):
            return False
        texts.append(key)
        if kind is str:
            texts.append(value)
        elif value is not None and kind is not int and kind is not bool:
            return False
    joined = "".join(texts)
    if "\x00" in joined or not joined.isascii() or not currency.isprintable():
        return False
    reference = metadata.get("external_reference_id")
    if reference is not None and len(str(reference)) > _EXTERNAL_REFERENCE_MAX:
        return False
    risk_score = values.get("risk_score")
    return risk_score is None or _storable_risk_score(risk_score)


def _text_problem(item: TransactionFacts) -> UnprocessableRecord | None:
    for name in ("description", "idempotency_key", "ip_address", "user_agent"):
        if _bad_text(getattr(item, name)):
            return UnprocessableRecord(f"{name} holds a character PostgreSQL refuses")
    for key, value in item.metadata.items():
        found = _metadata_problem(key, value)
        if found is not None:
            return UnprocessableRecord(f"metadata[{_quoted(key)}]: {found}")
    risk_score = getattr(item, "risk_score", None)
    if risk_score is not None and not _storable_risk_score(risk_score):
        return UnprocessableRecord(f"risk_score {_quoted(str(risk_score))} exceeds DECIMAL(5,2)")
    return None


def _metadata_problem(key: object, value: object) -> str | None:
    if type(key) is not str or _bad_text(key):
        return "the key holds a character PostgreSQL refuses"
    if type(value) is int and not _INT_MIN <= value <= _INT_MAX:
        return "an integer beyond 64 bits"
    if type(value) is str and _bad_text(value):
        return "the value holds a character PostgreSQL refuses"
    if value is not None and type(value) not in (str, int, bool):
        return f"a value of type {type(value).__name__}"
    if key == "external_reference_id" and value is not None:
        if len(str(value)) > _EXTERNAL_REFERENCE_MAX:
            return f"longer than the {_EXTERNAL_REFERENCE_MAX} characters of its column"
    return None


def _storable_risk_score(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and abs(value) < _RISK_SCORE_LIMIT


def _no_row(reason: str) -> UnprocessableRecord:
    return UnprocessableRecord(reason, row_storable=False)


def _bad_text(value: str | None) -> bool:
    """A NUL (no PostgreSQL text type holds one) or a lone surrogate (no UTF-8 for it)."""
    if value is None:
        return False
    if "\x00" in value:
        return True
    if value.isascii():
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False


def _is_code(value: str) -> bool:
    """Codes (currency, reason) go into the COPY text unescaped: printable ASCII only."""
    return value.isascii() and value.isprintable()


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    return value.replace("\x00", "\ufffd").encode(errors="replace").decode()


def _quoted(text: str) -> str:
    """Text from a record, safe to put in a reason (bounded, printable, storable)."""
    shown = repr(text[:_REASON_TEXT_MAX])
    return shown.encode(errors="replace").decode()


def storable(item: PostTransaction | TransactionRejected) -> PostTransaction | TransactionRejected:
    """A copy of ``item`` the ledger can record as FAILED and announce: every text cleaned
    (NUL and lone surrogates replaced), metadata entries that cannot be stored left out, a
    risk score beyond its column dropped. Amounts, wallets, ids and times are unchanged."""
    metadata = {
        _clean(key): _clean(value) if type(value) is str else value
        for key, value in item.metadata.items()
        if type(key) is str and _metadata_problem(_clean(key), _clean_value(value)) is None
    }
    updates: dict[str, object] = {
        "description": _clean(item.description),
        "idempotency_key": _clean(item.idempotency_key),
        "ip_address": _clean(item.ip_address),
        "user_agent": _clean(item.user_agent),
        "metadata": metadata,
    }
    if item.risk_score is not None and not _storable_risk_score(item.risk_score):
        updates["risk_score"] = None
    if isinstance(item, TransactionRejected):
        updates["reason_message"] = _clean(item.reason_message)
        if not _is_code(item.reason_code):
            updates["reason_code"] = UNPROCESSABLE_RECORD
    return item.model_copy(update=updates)


def _clean_value(value: object) -> object:
    return _clean(value) if type(value) is str else value

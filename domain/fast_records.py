"""Fast decode and encode of the records on the ledger's hot path, pydantic the fallback.

The ledger reads one ``PostTransaction`` and writes one ``TransactionPosted`` per transfer;
pydantic's validation and serialization of these ~25-field records cost more than all the
rest of the writer's Python. So:

* ``decode_ledger_input`` parses with orjson and checks each field directly, but only for
  the plain spelling our own producers write (canonical lowercase UUIDs, amounts as
  ``"12.3400"``, ISO times, no unknown field). Anything else, right or wrong, goes to the
  pydantic decoder, which accepts it with the same result or refuses it with its usual
  ``RecordDecodeError`` (so a dead letter explains itself exactly as before).
* ``encode`` writes a ``TransactionPosted`` with orjson, byte for byte what
  ``model_dump_json`` writes (tests/unit/test_fast_records.py holds both to that); other
  records go through pydantic.

Both build models without validating again (the checks are done), like ``model_construct``
but without its per-field bookkeeping.
"""

from __future__ import annotations

import operator
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from domain import records
from domain.ids import parse_canonical
from domain.money import wire
from domain.transactions import TransactionStatus, TransactionType

_setattr = object.__setattr__
_new = object.__new__

#: The one spelling of an amount the fast path takes: what ``money.wire`` writes, within
#: DECIMAL(19,4). Other spellings pydantic may still accept ("12.5"): it decides.
_AMOUNT = re.compile(r"\d{1,15}\.\d{4}").fullmatch
#: Plain decimals (risk scores); exponents, signs, spaces, NaN go to pydantic.
_PLAIN_DECIMAL = re.compile(r"-?\d{1,20}(\.\d{1,20})?").fullmatch
#: ISO 8601 with a date, a time to at most microseconds and an offset, as pydantic writes.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)").fullmatch
_TYPES = {t.value: t for t in TransactionType}


class _NotPlain(Exception):
    """A field the fast path does not take as is: the record goes to pydantic."""


def _uuid(value: object) -> uuid.UUID:
    parsed = parse_canonical(value)
    if parsed is None:
        raise _NotPlain
    return parsed


def _optional_uuid(value: object) -> uuid.UUID | None:
    return None if value is None else _uuid(value)


def _amount(value: object) -> Decimal:
    if type(value) is not str or not _AMOUNT(value):
        raise _NotPlain
    return Decimal(value)


def _timestamp(value: object) -> datetime:
    if type(value) is not str or not _TIMESTAMP(value):
        raise _NotPlain
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # e.g. February 30th: pydantic words the refusal
        raise _NotPlain from None


def _text(max_length: int, min_length: int = 0) -> Callable[[object], str]:
    def check(value: object) -> str:
        if type(value) is not str or not min_length <= len(value) <= max_length:
            raise _NotPlain
        return value

    return check


def _optional(check: Callable[[object], Any]) -> Callable[[object], Any]:
    def optional(value: object) -> Any:
        return None if value is None else check(value)

    return optional


def _transaction_type(value: object) -> TransactionType:
    found = _TYPES.get(value) if type(value) is str else None
    if found is None:
        raise _NotPlain
    return found


def _metadata(value: object) -> dict[str, Any]:
    if type(value) is not dict or len(value) > 32:
        raise _NotPlain
    for item in value.values():
        # JSON floats are coerced by pydantic's union (1.0 -> 1): leave those to it.
        if item is not None and type(item) not in (str, int, bool):
            raise _NotPlain
    return value


def _risk_score(value: object) -> Decimal | None:
    if value is None:
        return None
    if type(value) is not str or not _PLAIN_DECIMAL(value):
        raise _NotPlain
    return Decimal(value)


def _no_shadow_scores(value: object) -> dict[str, Any]:
    if value != {} or type(value) is not dict:
        raise _NotPlain
    return {}


def _schema_version(value: object) -> int:
    if type(value) is not int or value != 1:
        raise _NotPlain
    return 1


_FACT_CHECKS: dict[str, Callable[[object], Any]] = {
    "schema_version": _schema_version,
    "event_id": _uuid,
    "transaction_id": _uuid,
    "transaction_type": _transaction_type,
    "source_wallet_id": _optional_uuid,
    "destination_wallet_id": _optional_uuid,
    "source_user_id": _optional_uuid,
    "destination_user_id": _optional_uuid,
    "amount": _amount,
    "fee_amount": _amount,
    "total_amount": _amount,
    "currency_code": _text(3, 3),
    "description": _optional(_text(1000)),
    "client_id": _uuid,
    "idempotency_key": _text(255),
    "ip_address": _optional(_text(45)),
    "user_agent": _optional(_text(500)),
    "metadata": _metadata,
    "requested_at": _timestamp,
    "scored_by": _optional(_text(100, 1)),
    "shadow_scores": _no_shadow_scores,
    "risk_score": _risk_score,
    "decided_at": _timestamp,
}


class _Shape:
    """How one record class is checked and built on the fast path."""

    def __init__(
        self, cls: type[records.Record], extra_checks: dict[str, Callable[[Any], Any]]
    ) -> None:
        self.cls = cls
        self.kind = cls.model_fields["kind"].default
        fields = cls.model_fields
        checks = {n: c for n, c in {**_FACT_CHECKS, **extra_checks}.items() if n in fields}
        if set(checks) | {"kind"} != set(fields):
            raise RuntimeError(f"fast decoder of {cls.__name__} is out of date with its fields")
        self.checks = checks
        self.order = tuple(fields)
        self.required = frozenset(n for n, f in fields.items() if f.is_required())
        self.defaults = {
            n: f.default for n, f in fields.items() if not f.is_required() and n != "kind"
        }
        self.factories = {
            n: f.default_factory for n, f in fields.items() if f.default_factory is not None
        }

    def build(self, raw: dict[str, Any]) -> records.Record:
        if not self.required.issubset(raw):
            raise _NotPlain
        values: dict[str, Any] = {}
        checks, factories, defaults = self.checks, self.factories, self.defaults
        for name in self.order:
            if name in raw:
                values[name] = self.kind if name == "kind" else checks[name](raw[name])
            elif name == "kind":
                values[name] = self.kind
            elif name in factories:
                values[name] = factories[name]()  # type: ignore[call-arg]
            else:
                values[name] = defaults[name]
        if len(raw) != sum(1 for name in raw if name in checks or name == "kind"):
            raise _NotPlain  # an unknown field: pydantic names it
        built: records.Record = trusted(self.cls, values, set(raw))
        return built


def trusted(cls: type, values: dict[str, Any], fields_set: set[str]) -> Any:
    """A model from checked values in field order (``model_construct`` without its walk)."""
    made: Any = _new(cls)
    _setattr(made, "__dict__", values)
    _setattr(made, "__pydantic_fields_set__", fields_set)
    _setattr(made, "__pydantic_extra__", None)
    _setattr(made, "__pydantic_private__", None)
    return made


_LEDGER_INPUTS = {
    shape.kind: shape
    for shape in (
        _Shape(records.PostTransaction, {"expires_at": _optional(_timestamp)}),
        _Shape(
            records.TransactionRejected,
            {"reason_code": _text(50), "reason_message": _text(1000)},
        ),
    )
}


_POST_FIELDS = tuple(records.PostTransaction.model_fields)
_POST_KEYS = frozenset(_POST_FIELDS)
_POST_VALUES = operator.itemgetter(*_POST_FIELDS)
if _POST_FIELDS != (
    tuple(_FACT_CHECKS)[:21] + ("kind",) + tuple(_FACT_CHECKS)[21:] + ("expires_at",)
):
    raise RuntimeError("fast decoder of PostTransaction is out of date with its fields")


def _post_transaction(raw: dict[str, Any]) -> records.PostTransaction:
    """The commonest record, as our producers write it: every field present, in order.
    The same checks as ``_FACT_CHECKS``, written out: this runs once per transfer."""
    if raw.keys() != _POST_KEYS:
        raise _NotPlain
    (
        schema_version,
        event_id,
        transaction_id,
        transaction_type,
        source_wallet_id,
        destination_wallet_id,
        source_user_id,
        destination_user_id,
        amount,
        fee_amount,
        total_amount,
        currency_code,
        description,
        client_id,
        idempotency_key,
        ip_address,
        user_agent,
        metadata,
        requested_at,
        scored_by,
        shadow_scores,
        _kind,
        risk_score,
        decided_at,
        expires_at,
    ) = _POST_VALUES(raw)
    if (
        type(schema_version) is not int
        or schema_version != 1
        or type(currency_code) is not str
        or len(currency_code) != 3
        or type(idempotency_key) is not str
        or len(idempotency_key) > 255
        or (description is not None and (type(description) is not str or len(description) > 1000))
        or (ip_address is not None and (type(ip_address) is not str or len(ip_address) > 45))
        or (user_agent is not None and (type(user_agent) is not str or len(user_agent) > 500))
        or (scored_by is not None and (type(scored_by) is not str or not 0 < len(scored_by) <= 100))
        or shadow_scores != {}
        or type(shadow_scores) is not dict
    ):
        raise _NotPlain
    values = {
        "schema_version": 1,
        "event_id": _uuid(event_id),
        "transaction_id": _uuid(transaction_id),
        "transaction_type": _transaction_type(transaction_type),
        "source_wallet_id": None if source_wallet_id is None else _uuid(source_wallet_id),
        "destination_wallet_id": (
            None if destination_wallet_id is None else _uuid(destination_wallet_id)
        ),
        "source_user_id": None if source_user_id is None else _uuid(source_user_id),
        "destination_user_id": (
            None if destination_user_id is None else _uuid(destination_user_id)
        ),
        "amount": _amount(amount),
        "fee_amount": _amount(fee_amount),
        "total_amount": _amount(total_amount),
        "currency_code": currency_code,
        "description": description,
        "client_id": _uuid(client_id),
        "idempotency_key": idempotency_key,
        "ip_address": ip_address,
        "user_agent": user_agent,
        "metadata": _metadata(metadata),
        "requested_at": _timestamp(requested_at),
        "scored_by": scored_by,
        "shadow_scores": shadow_scores,
        "kind": "PostTransaction",
        "risk_score": _risk_score(risk_score),
        "decided_at": _timestamp(decided_at),
        "expires_at": None if expires_at is None else _timestamp(expires_at),
    }
    built: records.PostTransaction = trusted(records.PostTransaction, values, set(_POST_FIELDS))
    return built


def decode_ledger_input(
    payload: bytes | None,
) -> records.PostTransaction | records.TransactionRejected:
    """What ``records.decode_ledger_input`` returns for the same bytes, faster when the
    record is spelled as our producers spell it."""
    if payload is not None:
        try:
            raw = orjson.loads(payload)
            if type(raw) is dict:
                kind = raw.get("kind")
                if kind == "PostTransaction" and len(raw) == len(_POST_FIELDS):
                    return _post_transaction(raw)
                shape = _LEDGER_INPUTS.get(kind)
                if shape is not None:
                    return shape.build(raw)  # type: ignore[return-value]
        except (_NotPlain, orjson.JSONDecodeError):
            pass
    return records.decode_ledger_input(payload)


# ---- encoding ------------------------------------------------------------------------


_POSTED_FIELDS = tuple(records.TransactionPosted.model_fields)
_POSTED_VALUES = operator.itemgetter(*_POSTED_FIELDS)
_POSTED_AMOUNTS = ("amount", "fee_amount", "total_amount")
_FACTS_END = _POSTED_FIELDS.index("requested_at") + 1
if _POSTED_FIELDS[_FACTS_END:] != (
    "kind",
    "transaction_status",
    "risk_score",
    "completed_at",
    "captured_amount",
):
    raise RuntimeError("fast encoder of TransactionPosted is out of date with its fields")


def _text_of(value: object) -> str:
    """orjson's hook for what it does not write itself: our ``TextUUID`` (a UUID subclass)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not written by the fast encoder")


def encode(record: records.Record) -> bytes:
    """``records.encode``, faster for a ``TransactionPosted`` (the ledger's one per posting)
    and a ``PostTransaction`` (the stream's one per approval): orjson writes UUIDs, enums and
    times as pydantic does (``Z`` for UTC); amounts are written here with ``money.wire``.
    Whatever orjson would write differently (a time zone it does not know, a value of an
    unexpected type) goes to pydantic."""
    kind = type(record)
    if kind is records.TransactionPosted:
        values = dict(zip(_POSTED_FIELDS, _POSTED_VALUES(record.__dict__), strict=True))
    elif kind is records.PostTransaction:
        values = dict(zip(_POST_FIELDS, _POST_VALUES(record.__dict__), strict=True))
    else:
        return records.encode(record)
    try:
        for name in _POSTED_AMOUNTS:
            values[name] = wire(values[name])
        risk_score = values["risk_score"]
        if risk_score is not None:
            values["risk_score"] = str(risk_score)
        captured = values.get("captured_amount")
        if captured is not None:
            values["captured_amount"] = wire(captured)
        shadow = values.get("shadow_scores")
        if shadow:
            values["shadow_scores"] = {name: str(score) for name, score in shadow.items()}
        if (
            type(values["metadata"]) is not dict
            or type(values.get("transaction_status", TransactionStatus.COMPLETED))
            is not TransactionStatus
            or type(values["transaction_type"]) is not TransactionType
        ):
            return records.encode(record)
        return orjson.dumps(values, default=_text_of, option=orjson.OPT_UTC_Z)
    except (TypeError, AttributeError, orjson.JSONEncodeError):
        return records.encode(record)

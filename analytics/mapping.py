"""Map a pipeline record to its ``pipeline_events`` row.

Three ways in, one row out (``EVENT_COLUMNS`` order, see ``analytics.clickhouse``):

- ``row_from_json``: the reference, straight from the record's JSON bytes (the sink's way for
  every record the native decoder below leaves, with the reason if it refuses). Decoding every
  record into pydantic objects (seven ``uuid.UUID``, three ``Decimal``, two ``datetime``
  each) bounded a sink to about 30,000 records per CPU-second; this reads the JSON with
  orjson and checks, in Python, only what a whole column cannot: ids, times, amounts and the
  short codes stay the record's text here, and ``analytics.clickhouse.events_batch`` checks
  and converts them per column in Arrow's C code (a value it refuses sends that one record
  to the dead-letter topic, with the reason).
- ``event_row``: from a decoded record (tests, tools); the same row, and the tests hold the
  two to it for every kind of record.
- ``NativeDecoder``: the sink's fast way, many records at once, in Rust (the
  ``sink_decoder`` extension under ``native/``): the rows ``row_from_json`` would give, checked
  and converted as ``analytics.clickhouse``'s column checks would, straight into Arrow column
  buffers, for the records that are plainly well formed; every other record is handed back,
  and ``row_from_json`` and the column checks take it (with their exact reason when they
  refuse it). Python's per-record work (orjson's dict, this module's tuple, pyarrow reading
  the tuples, the checks) cost about 8 µs a record; the extension's is about 2 µs, with the
  GIL released. The rules it follows are this module's tables and the checks' constants,
  passed to it when it is made.

A row is a tuple (``events_batch`` reads tuples in one pass). It holds: ids as text, times
as ISO-8601 text with a zone, amounts as decimal text, ``risk_score`` a float or None,
``shadow_scores`` a list of (model, score) pairs. A record that cannot be mapped raises
``RecordDecodeError`` with a reason naming the field.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from domain import records
from domain.exceptions import DomainError, RecordDecodeError
from domain.money import from_wire, wire
from domain.topics import REVIEWS_REQUESTED

try:
    import sink_decoder
except ImportError:  # an install without the Rust build: every record takes row_from_json
    sink_decoder = None

#: Said once when the sink starts without its native decoder.
NATIVE_DECODER_MISSING = (
    "analytics: the sink's native decoder (native/sink_decoder) is not installed; records are "
    "decoded in Python (about half the rows/s). `bash infra/bootstrap.sh` or `pip install "
    "native/sink_decoder` builds it with cargo."
)

_KIND = {
    "TransactionRequested": "requested",
    "TransactionRejected": "rejected",
    "PostTransaction": "approved",
    "TransactionPosted": "posted",
    "TransactionFailed": "failed",
    "DuplicateDiscarded": "duplicate_discarded",
    "ReviewRequested": "review",
}
_STATUS = {
    "requested": "PENDING",
    "approved": "PENDING",
    "rejected": "FAILED",
    "posted": "COMPLETED",
    "failed": "FAILED",
    "duplicate_discarded": "",
    "review": "PENDING",
}
#: The field that says when each kind of event happened.
_WHEN = {
    "TransactionRequested": "requested_at",
    "TransactionRejected": "decided_at",
    "PostTransaction": "decided_at",
    "TransactionPosted": "completed_at",
    "TransactionFailed": "failed_at",
    "DuplicateDiscarded": "discarded_at",
    "ReviewRequested": "decided_at",
}
#: Kinds that carry a risk score, and kinds the stream scored and decided (``ScoredFacts``).
_SCORE_KINDS = frozenset(
    {"TransactionRejected", "PostTransaction", "TransactionPosted", "ReviewRequested"}
)
_SCORED_FACTS = frozenset({"TransactionRejected", "PostTransaction", "ReviewRequested"})
_REASON_KINDS = frozenset({"TransactionRejected", "TransactionFailed"})
#: A review request has a topic of its own; every other topic the sink reads carries
#: transaction records of any other kind (as ``records.decode_transaction_record`` reads).
_REVIEW_TOPIC_KINDS = frozenset({"ReviewRequested"})
_TRANSACTION_KINDS = frozenset(_KIND) - _REVIEW_TOPIC_KINDS
_MODEL_NAME_MAX = 100
_NO_SCORES: list[tuple[str, float]] = []
_NO_METADATA: dict[str, Any] = {}


def _fail(field: str, message: str) -> RecordDecodeError:
    return RecordDecodeError(f"{field}: {message}")


def _score(field: str, value: Any) -> float:
    """0-100 scores travel as decimal strings; JSON numbers are read too (as pydantic did)."""
    if type(value) is str or type(value) is int or type(value) is float:
        try:
            score = float(value)
        except ValueError:
            raise _fail(field, f"{value!r} is not a number") from None
        if math.isfinite(score):
            return score
    raise _fail(field, f"{value!r} is not a finite number")


def _metadata_text(metadata: dict[str, Any], name: str) -> str:
    value = metadata.get(name)
    if value is None or type(value) is str or type(value) is int or type(value) is bool:
        return str(value or "")
    raise _fail(f"metadata.{name}", "must be a string, integer, boolean or null")


def _shadow_scores(value: Any) -> list[tuple[str, float]]:
    if value is None:
        return []
    if type(value) is not dict:
        raise _fail("shadow_scores", "must be an object of model name -> score")
    if len(value) > records.SHADOW_SCORES_MAX:
        raise _fail("shadow_scores", f"more than {records.SHADOW_SCORES_MAX} models")
    scores = []
    for name, raw in value.items():
        if not name or len(name) > _MODEL_NAME_MAX:
            raise _fail("shadow_scores", f"model name {name!r} is empty or too long")
        score = _score(f"shadow_scores.{name}", raw)
        if not 0 <= score <= 100:
            raise _fail(f"shadow_scores.{name}", f"{raw!r} is not between 0 and 100")
        scores.append((name, score))
    return scores


def _moved_and_total(record: dict[str, Any], amount: Any, fee: Any, total: Any) -> tuple[str, str]:
    """A two-phase posting moved what the gateway captured, not the amount asked for."""
    captured = record.get("captured_amount")
    if type(captured) is not str or type(amount) is not str or type(fee) is not str:
        raise _fail("captured_amount", "amounts travel as decimal strings")
    try:
        moved, fee_value, asked = from_wire(captured), from_wire(fee), from_wire(amount)
    except DomainError as error:
        raise _fail("captured_amount", error.message) from None
    if moved == asked:
        return amount, total
    return wire(moved), wire(moved + fee_value)


def row_from_json(topic: str | None, payload: bytes | None) -> tuple[Any, ...]:
    """The row of one record's JSON, read from ``topic`` (see the module's docstring).

    Checked here: the kind (for the topic), the schema version, scores, model names and the
    metadata the row keeps. Ids, times, amounts, the type, currency and reason code go on as
    they are: ``events_batch`` checks those per column, null (absent) included."""
    if payload is None:
        raise RecordDecodeError("record has no value")
    try:
        record = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise RecordDecodeError(f"record: invalid JSON ({error})") from None
    if type(record) is not dict:
        raise RecordDecodeError("record: not a JSON object")
    get = record.get
    name = get("kind")
    allowed = _REVIEW_TOPIC_KINDS if topic == REVIEWS_REQUESTED.name else _TRANSACTION_KINDS
    if type(name) is not str or name not in allowed:
        raise _fail("kind", f"{name!r} is not one of {sorted(allowed)}")
    if get("schema_version", records.SCHEMA_VERSION) != records.SCHEMA_VERSION:
        raise _fail("schema_version", f"must be {records.SCHEMA_VERSION}")
    kind = _KIND[name]
    amount, total = get("amount"), get("total_amount")
    if name == "TransactionPosted" and get("captured_amount") not in (None, amount):
        amount, total = _moved_and_total(record, amount, get("fee_amount"), total)
    score = None
    if name in _SCORE_KINDS and get("risk_score") is not None:
        score = _score("risk_score", get("risk_score"))
    scored_by, shadow = "", _NO_SCORES
    if name in _SCORED_FACTS:
        scored_by = get("scored_by") or ""
        if type(scored_by) is not str or len(scored_by) > _MODEL_NAME_MAX:
            raise _fail("scored_by", f"not a model name of at most {_MODEL_NAME_MAX} characters")
        if get("shadow_scores"):
            shadow = _shadow_scores(get("shadow_scores"))
    metadata = get("metadata") or _NO_METADATA
    if type(metadata) is not dict:
        raise _fail("metadata", "must be an object")
    channel, terminal = metadata.get("channel"), metadata.get("terminal_id")
    return (
        get("event_id"),
        kind,
        get(_WHEN[name]),
        get("transaction_id"),
        get("transaction_type"),
        _STATUS[kind],
        get("source_wallet_id"),
        get("destination_wallet_id"),
        get("source_user_id"),
        get("destination_user_id"),
        amount,
        get("fee_amount"),
        total,
        get("currency_code"),
        get("reason_code") if name in _REASON_KINDS else "",
        score,
        get("requested_at"),
        channel if type(channel) is str else _metadata_text(metadata, "channel"),
        terminal if type(terminal) is str else _metadata_text(metadata, "terminal_id"),
        get("client_id"),
        scored_by,
        shadow,
    )


class NativeDecoder:
    """Records to Arrow column buffers in the ``sink_decoder`` extension (see the module's
    docstring): ``decode`` returns the indices of the records left to ``row_from_json`` and the
    columns of the others' rows, by column name (the extension's docstring gives their
    layout), checked and converted as ``analytics.clickhouse``'s column checks convert
    them. It takes a record only when ``row_from_json`` would take it and the column checks
    pass its row, and gives the same values: it leaves anything else, every record either
    refuses included, to them and their reasons."""

    #: (kind, event kind, status, time field, has a score, scored by a model, has a reason,
    #: read from the review topic) per record kind: this module's tables, one source.
    RULES = [
        (
            name,
            kind,
            _STATUS[kind],
            _WHEN[name],
            name in _SCORE_KINDS,
            name in _SCORED_FACTS,
            name in _REASON_KINDS,
            name in _REVIEW_TOPIC_KINDS,
        )
        for name, kind in _KIND.items()
    ]

    @classmethod
    def available(cls) -> bool:
        """Whether the extension is installed (it is optional: see NATIVE_DECODER_MISSING)."""
        return sink_decoder is not None

    def __init__(self, transaction_types: list[str], reason_code_max: int) -> None:
        """``transaction_types`` and ``reason_code_max``: what the column checks
        (``analytics.clickhouse``) allow, for the rows the decoder converts itself."""
        if sink_decoder is None:
            raise ImportError(NATIVE_DECODER_MISSING)
        self._native = sink_decoder.Decoder(
            self.RULES,
            records.SCHEMA_VERSION,
            records.SHADOW_SCORES_MAX,
            _MODEL_NAME_MAX,
            transaction_types,
            reason_code_max,
        )

    def decode(
        self, topics: list[str | None], payloads: list[bytes | None]
    ) -> tuple[list[int], dict[str, tuple[Any, ...]]]:
        review = REVIEWS_REQUESTED.name
        flags = [topic == review for topic in topics]
        try:
            return self._native.decode(payloads, flags)
        except TypeError:  # a record without a value (None): left to row_from_json
            present = [payload if type(payload) is bytes else b"" for payload in payloads]
            return self._native.decode(present, flags)


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def _time(value: datetime) -> str:
    # A naive time is taken as UTC, as the records' times are.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def event_row(record: records.TransactionRecord | records.ReviewRequested) -> tuple[Any, ...]:
    """The row of a decoded record: what ``row_from_json`` gives for its JSON."""
    kind = _KIND[record.kind]
    score = getattr(record, "risk_score", None)
    metadata = record.metadata
    moved: Decimal = getattr(record, "moved_amount", record.amount)
    total = record.total_amount if moved == record.amount else moved + record.fee_amount
    scored = isinstance(record, records.ScoredFacts)
    return (
        str(record.event_id),
        kind,
        _time(getattr(record, _WHEN[record.kind])),
        str(record.transaction_id),
        record.transaction_type.value,
        _STATUS[kind],
        _id(record.source_wallet_id),
        _id(record.destination_wallet_id),
        _id(record.source_user_id),
        _id(record.destination_user_id),
        wire(moved),
        wire(record.fee_amount),
        wire(total),
        record.currency_code,
        getattr(record, "reason_code", "") or "",
        None if score is None else float(score),
        _time(record.requested_at),
        str(metadata.get("channel") or ""),
        str(metadata.get("terminal_id") or ""),
        str(record.client_id),
        (record.scored_by or "") if scored else "",
        [(name, float(s)) for name, s in record.shadow_scores.items()] if scored else [],
    )

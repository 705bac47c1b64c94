"""The ClickHouse side: one client (embedded chDB or a server), guarded access.

Only one process may open a chDB path, and the embedded session is not safe to share
between threads without a lock, so every query goes through ``Warehouse``. The tables are
declared in ``analytics.schema``.

Events go in as one Arrow table per batch (``insert_arrow``: the same call for chDB and a
server), built and checked column by column in pyarrow's C code (``events_batch``), where
clickhouse-connect's own insert serialized UUIDs, decimals and datetimes value by value in
Python. Amounts are Arrow decimal128(19, 4), exact both ways (a value with more than 4
decimals is refused instead of rounded).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import clickhouse_connect
import pyarrow as pa
import pyarrow.compute as pc

from analytics import schema
from analytics.mapping import NativeDecoder, row_from_json
from domain.exceptions import RecordDecodeError
from domain.transactions import TransactionType

#: The columns the sink writes, in row order (``analytics.mapping``), each with the Arrow
#: type it is read as from the rows and, where it has one, the check and conversion it gets
#: per column before it goes to ClickHouse (``events_batch``). Ids, times, amounts and the
#: short codes come as the records' text: one regular expression, cast or comparison over a
#: whole column in Arrow's C code costs a fraction of building ``uuid.UUID``, ``datetime``
#: and ``Decimal`` objects, and checking them, one value at a time in Python. Ids go to
#: ClickHouse as text, which both the embedded engine and a server parse into UUID columns.
#: DateTime64(3) keeps milliseconds: times are truncated to them as the table would. Amounts
#: are decimal128(19, 4), exact: a value with more than 4 decimals, or past 15 integer
#: digits, is refused instead of rounded.
_TEXT, _SCORE = pa.string(), pa.float32()
_SHADOW_SCORES = pa.map_(pa.string(), pa.float32())
_TIME_US, _TIME_MS = pa.timestamp("us", tz="UTC"), pa.timestamp("ms", tz="UTC")
_DECIMAL = pa.decimal128(19, 4)
_ZERO = pa.scalar(0, _DECIMAL)
_UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_TRANSACTION_TYPES = pa.array(sorted(t.value for t in TransactionType))
#: The longest reason code the records allow (``TransactionRejected.reason_code``).
REASON_CODE_MAX = 50


def _present(values: pa.Array) -> None:
    if values.null_count:
        raise pa.ArrowInvalid("field required")


def _all(mask: pa.Array, reason: str) -> None:
    if not pc.all(mask, min_count=0).as_py():  # nulls (an absent wallet or user) pass
        raise pa.ArrowInvalid(reason)


def _uuid(values: pa.Array) -> pa.Array:
    """Canonical text, in lower case (the dedup lookup reads ids back that way)."""
    lower = pc.utf8_lower(values)
    _all(pc.match_substring_regex(lower, _UUID_PATTERN), "not a UUID")
    return lower


def _required_uuid(values: pa.Array) -> pa.Array:
    _present(values)
    return _uuid(values)


def _time(values: pa.Array) -> pa.Array:
    _present(values)
    return pc.cast(pc.cast(values, _TIME_US), _TIME_MS, safe=False)


def _amount(values: pa.Array) -> pa.Array:
    _present(values)
    amounts = pc.cast(values, _DECIMAL)
    _all(pc.greater_equal(amounts, _ZERO), "a negative amount")
    return amounts


def _transaction_type(values: pa.Array) -> pa.Array:
    _all(pc.is_in(values, value_set=_TRANSACTION_TYPES), "not a transaction type")
    return values


def _currency(values: pa.Array) -> pa.Array:
    _present(values)
    _all(pc.equal(pc.utf8_length(values), 3), "not a 3-letter currency code")
    return values


def _reason(values: pa.Array) -> pa.Array:
    _present(values)
    _all(
        pc.less_equal(pc.utf8_length(values), REASON_CODE_MAX),
        f"longer than {REASON_CODE_MAX} characters",
    )
    return values


Check = Callable[[pa.Array], pa.Array]
_EVENT_FIELDS: tuple[tuple[str, pa.DataType, Check | None], ...] = (
    ("event_id", _TEXT, _required_uuid),
    ("event_kind", _TEXT, None),
    ("event_time", _TEXT, _time),
    ("transaction_id", _TEXT, _required_uuid),
    ("transaction_type", _TEXT, _transaction_type),
    ("transaction_status", _TEXT, None),
    ("source_wallet_id", _TEXT, _uuid),
    ("destination_wallet_id", _TEXT, _uuid),
    ("source_user_id", _TEXT, _uuid),
    ("destination_user_id", _TEXT, _uuid),
    ("amount", _TEXT, _amount),
    ("fee_amount", _TEXT, _amount),
    ("total_amount", _TEXT, _amount),
    ("currency_code", _TEXT, _currency),
    ("reason_code", _TEXT, _reason),
    ("risk_score", _SCORE, None),
    ("requested_at", _TEXT, _time),
    ("channel", _TEXT, None),
    ("terminal_id", _TEXT, None),
    ("client_id", _TEXT, _required_uuid),
    ("scored_by", _TEXT, None),
    ("shadow_scores", _SHADOW_SCORES, None),
)
EVENT_COLUMNS = tuple(name for name, _, _ in _EVENT_FIELDS)
_CONVERTED = {_time: _TIME_MS, _amount: _DECIMAL}
EVENT_SCHEMA = pa.schema(
    [(name, _CONVERTED.get(check, read_as)) for name, read_as, check in _EVENT_FIELDS]  # type: ignore[arg-type]
)
#: A row as Arrow reads it: pyarrow turns a list of row tuples into one struct array, in one
#: pass in C, and that splits into the columns: twice as fast as transposing the rows in
#: Python and converting each column.
_ROW = pa.struct([(name, read_as) for name, read_as, _ in _EVENT_FIELDS])
#: Rows of one insert are unique by event id (the sink drops repeats first) and the views
#: group by their tables' keys, so merging each new part on insert finds nothing to merge:
#: skip that pass (about a fifth of a small insert's time with eight views). The ten views
#: of an insert run side by side rather than one after the other: the sink's two threads
#: leave the second core idle part of the time (1.0 to 1.3 times the rows/s in six paired
#: runs of the sink's two threads, 1.16 on average; docs/analytics.md).
INSERT_SETTINGS = {"optimize_on_insert": 0, "parallel_view_processing": 1}
#: A smaller insert (a quiet sink's) runs its views one after the other: there the threads
#: cost more CPU than they save time (100 rows: about 230 ms of CPU side by side against 160
#: ms in turn; ``bench.analytics.flush_cost``).
PARALLEL_VIEWS_ROWS_MIN = 10_000
SMALL_INSERT_SETTINGS = {**INSERT_SETTINGS, "parallel_view_processing": 0}
REPORT_COLUMNS = (
    "report_id",
    "report_type",
    "category",
    "occurred_at",
    "subject_user_id",
    "subject_wallet_id",
    "currency_code",
    "total_amount",
    "transaction_count",
    "record",
)
#: Ids per existence query: bounds the SQL text (about 40 bytes an id).
IDS_PER_QUERY_MAX = 20_000
#: Stored ids per batch id the lookup reads back before it searches by id instead.
WINDOW_IDS_PER_ID_MAX = 4
_WINDOW = """FROM pipeline_events
    WHERE event_kind IN {kinds:Array(String)}
      AND event_time >= {start:DateTime64(3)} AND event_time <= {end:DateTime64(3)}"""


def _text_array(values: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values if isinstance(values, pa.Array) else pa.array(list(values), _TEXT)


def connect(target: str) -> Any:
    """``chdb:///abs/path`` opens the embedded engine; ``http://host:8123`` a server."""
    return clickhouse_connect.get_client(dsn=target)


class Warehouse:
    def __init__(self, target: str) -> None:
        self._client = connect(target)
        self._lock = threading.Lock()
        self.rebuilt_roll_ups = schema.apply(self)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._client.command(sql, parameters=parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        with self._lock:
            return list(self._client.query(sql, parameters=parameters or {}).result_rows)

    def insert_events(self, table: pa.Table) -> None:
        """A batch from ``events_batch``, in one insert (one part per table and month)."""
        if not table.num_rows:
            return
        with self._lock:
            settings = (
                INSERT_SETTINGS
                if table.num_rows >= PARALLEL_VIEWS_ROWS_MIN
                else SMALL_INSERT_SETTINGS
            )
            self._client.insert_arrow("pipeline_events", table, settings=settings)

    def stored_event_ids(
        self,
        kinds: Sequence[str],
        ids: Sequence[str] | pa.Array | pa.ChunkedArray,
        start: datetime,
        end: datetime,
    ) -> set[str]:
        """Which of ``ids`` (events of ``kinds`` between ``start`` and ``end``, inclusive)
        are stored already. The time bounds let the primary key skip most of the table.

        A live batch's window holds few stored events besides a replay of the batch itself,
        so the window's ids are read and matched here: sending ten thousand ids as a query
        parameter cost more (formatting them, and the engine parsing them) than the search.
        A window holding more than ``WINDOW_IDS_PER_ID_MAX`` times the batch (a backfill
        whose partitions are far apart in time) is searched for the ids instead. Ids are
        the canonical lower-case text both ways (``toString`` of a UUID)."""
        if not ids:
            return set()
        window = {"kinds": list(kinds), "start": start, "end": end}
        window_max = len(ids) * WINDOW_IDS_PER_ID_MAX
        stored = self.query(f"SELECT toString(event_id) {_WINDOW} LIMIT {window_max + 1}", window)
        if len(stored) <= window_max:
            if not stored:
                return set()
            window_ids = pa.array([row[0] for row in stored], _TEXT)
            wanted = pc.is_in(window_ids, value_set=_text_array(ids))
            return set(window_ids.filter(wanted).to_pylist())
        found: set[str] = set()
        every_id = _text_array(ids)
        for first in range(0, len(every_id), IDS_PER_QUERY_MAX):
            chunk = every_id.slice(first, IDS_PER_QUERY_MAX).to_pylist()
            rows = self.query(
                f"SELECT toString(event_id) {_WINDOW} AND event_id IN {{ids:Array(UUID)}}",
                {**window, "ids": chunk},
            )
            found.update(row[0] for row in rows)
        return found

    def insert_reports(self, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self._lock:
            self._client.insert("regulatory_reports", list(rows), column_names=REPORT_COLUMNS)

    def stored_report_ids(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        rows = self.query(
            "SELECT report_id FROM regulatory_reports WHERE report_id IN {ids:Array(UUID)}",
            {"ids": list(ids)},
        )
        return {row[0] for row in rows}

    def close(self) -> None:
        with self._lock:
            self._client.close()


@dataclass(frozen=True)
class EventsBatch:
    """Rows as one Arrow table in ``EVENT_SCHEMA``, and the rows left out of it: their
    index in the rows given, and why (the sink dead-letters those records). ``undecodable``:
    the records (added with ``EventsBatchBuilder.add_record``) that ``row_from_json``
    refused, by index, with its reason."""

    table: pa.Table
    rejected: dict[int, str]
    undecodable: dict[int, str] = field(default_factory=dict)


def _failures(values: pa.Array, convert: Any, offset: int = 0) -> list[tuple[int, str]]:
    """The values ``convert`` refuses, with its reason, found by halving: a column with a
    few bad values costs a few dozen conversions of ever smaller slices."""
    try:
        convert(values)
        return []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        if len(values) == 1:
            return [(offset, f"{values[0].as_py()!r}: {error}")]
    half = len(values) // 2
    return _failures(values.slice(0, half), convert, offset) + _failures(
        values.slice(half), convert, offset + half
    )


#: Rows held as Python tuples before they become Arrow: a batch's rows are converted a
#: chunk at a time as they are decoded, so the tuples (and the strings orjson made for them)
#: are freed while they are still in cache, and the garbage collector, which walks every
#: live tuple at each of its passes, never sees more than one chunk of them. Held all at once,
#: 50,000 rows made decoding and converting a batch about 1.5 times slower.
ROWS_PER_CHUNK = 256


def _rows_arrow_reads(rows: Sequence[tuple[Any, ...]]) -> tuple[pa.StructArray, list[int]]:
    """The rows as one struct array, and the index of each of its rows in ``rows``. A value
    of the wrong type (a number where text belongs) fails the whole conversion: then each row
    is tried alone, and the ones that fail are left out (the caller reports them)."""
    try:
        return pa.array(rows, type=_ROW), list(range(len(rows)))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    fitting = []
    for index, row in enumerate(rows):
        try:
            pa.array([row], type=_ROW)
            fitting.append(index)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            continue
    return pa.array([rows[i] for i in fitting], type=_ROW), fitting


#: Records decoded per call of the native decoder: large enough that building the Arrow
#: arrays from its buffers (a few µs a column) is spread thin, small enough to stay in cache.
RECORDS_PER_CHUNK = 2_048
#: None without the extension: the sink then decodes every record by ``row_from_json``.
NATIVE_DECODER = (
    NativeDecoder(_TRANSACTION_TYPES.to_pylist(), REASON_CODE_MAX)
    if NativeDecoder.available()
    else None
)


def _buffer(data: bytes | None) -> pa.Buffer | None:
    return None if data is None else pa.py_buffer(data)


def _native_array(spec: tuple[Any, ...], rows: int) -> pa.Array:
    """One column from the native decoder's buffers (``NativeDecoder``), zero-copy."""
    if spec[0] == "text":
        _, validity, offsets, data, nulls = spec
        buffers = [_buffer(validity), pa.py_buffer(offsets), pa.py_buffer(data)]
        return pa.Array.from_buffers(_TEXT, rows, buffers, null_count=nulls)
    if spec[0] == "timestamp_ms":
        return pa.Array.from_buffers(_TIME_MS, rows, [None, pa.py_buffer(spec[1])])
    if spec[0] == "decimal128":
        return pa.Array.from_buffers(_DECIMAL, rows, [None, pa.py_buffer(spec[1])])
    if spec[0] == "float32":
        _, validity, values, nulls = spec
        return pa.Array.from_buffers(
            _SCORE, rows, [_buffer(validity), pa.py_buffer(values)], null_count=nulls
        )
    _, offsets, name_offsets, names, values = spec
    entries = len(values) // 4
    keys = pa.Array.from_buffers(
        _TEXT, entries, [None, pa.py_buffer(name_offsets), pa.py_buffer(names)]
    )
    items = pa.Array.from_buffers(_SCORE, entries, [None, pa.py_buffer(values)])
    starts = pa.Array.from_buffers(pa.int32(), rows + 1, [None, pa.py_buffer(offsets)])
    return pa.MapArray.from_arrays(starts, keys, items, type=_SHADOW_SCORES)


class EventsBatchBuilder:
    """Builds an ``events_batch`` from rows added one at a time (``add``), converting them
    to Arrow every ``ROWS_PER_CHUNK`` rows (see there), or from records' JSON
    (``add_record``: the sink's way), decoded ``RECORDS_PER_CHUNK`` at a time by the native
    decoder (its rows come checked and converted), the records it leaves by
    ``row_from_json``; ``finish`` checks the columns of the rows it has not, and puts every
    row back in the order it was added. The result is the one ``events_batch`` gives for the
    same rows (for records: for their ``row_from_json`` rows), rejections (by index in the
    order the rows and records were added) and reasons included."""

    def __init__(
        self, rows_per_chunk: int = ROWS_PER_CHUNK, decoder: NativeDecoder | None = NATIVE_DECODER
    ) -> None:
        """``decoder=None`` decodes every record by ``row_from_json``: the reference the
        tests hold the native decoder to."""
        self._rows_per_chunk = rows_per_chunk
        self._decoder = decoder
        self._empty()

    def _empty(self) -> None:
        self._pending: list[tuple[Any, ...]] = []
        self._pending_positions: list[int] = []  # each pending row's index among those added
        self._topics: list[str | None] = []  # records waiting for the native decoder
        self._payloads: list[bytes | None] = []
        self._chunks: list[pa.StructArray] = []  # rows as read, checked by ``finish``
        self._positions: list[int] = []  # each converted row's index among the rows added
        self._decoded: list[pa.Table] = []  # rows the native decoder checked and converted
        self._decoded_positions: list[int] = []
        self._rejected: dict[int, str] = {}
        self._undecodable: dict[int, str] = {}
        self.rows = 0

    def add(self, row: tuple[Any, ...]) -> None:
        if self._payloads:
            self._decode_records()  # what came first is converted first
        self._pending.append(row)
        self._pending_positions.append(self.rows)
        self.rows += 1
        if len(self._pending) >= self._rows_per_chunk:
            self._convert()

    def add_record(self, topic: str | None, payload: bytes | None) -> None:
        """A record's JSON as read from ``topic`` (the name without any prefix)."""
        if self._pending:
            self._convert()
        self._topics.append(topic)
        self._payloads.append(payload)
        self.rows += 1
        if len(self._payloads) >= RECORDS_PER_CHUNK:
            self._decode_records()

    def _decode_records(self) -> None:
        """The waiting records, by the native decoder (its rows come checked and converted);
        the ones it leaves by ``row_from_json`` (the reason of a record that refuses goes to
        ``undecodable``), their rows checked with the others by ``finish``."""
        topics, payloads = self._topics, self._payloads
        first = self.rows - len(payloads)
        self._topics, self._payloads = [], []
        if self._decoder is None:
            left = list(range(len(payloads)))
        else:
            left, columns = self._decoder.decode(topics, payloads)
            taken = len(payloads) - len(left)
            arrays = [_native_array(columns[name], taken) for name in EVENT_COLUMNS]
            self._decoded.append(pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA))
            if not left:
                self._decoded_positions.extend(range(first, first + len(payloads)))
                return
            leaving = set(left)
            self._decoded_positions.extend(
                first + index for index in range(len(payloads)) if index not in leaving
            )
        for index in left:
            try:
                row = row_from_json(topics[index], payloads[index])
            except RecordDecodeError as error:
                self._undecodable[first + index] = error.message
                continue
            self._pending.append(row)
            self._pending_positions.append(first + index)
        self._convert()

    def _convert(self) -> None:
        if not self._pending:
            return
        positions = self._pending_positions
        struct, fitting = _rows_arrow_reads(self._pending)
        if len(fitting) < len(self._pending):
            fits = set(fitting)
            for index, row in enumerate(self._pending):
                if index not in fits:
                    self._rejected[positions[index]] = _type_error(row)
        self._chunks.append(struct)
        self._positions.extend(positions[index] for index in fitting)
        self._pending, self._pending_positions = [], []

    def finish(self) -> EventsBatch:
        """The batch's table and its rejections; the builder is empty again afterwards."""
        self._convert()
        if self._payloads:
            self._decode_records()
        struct = pa.concat_arrays(self._chunks) if self._chunks else pa.array([], type=_ROW)
        checked, kept, rejected = _checked(struct, self._positions, self._rejected)
        table = pa.concat_tables([*self._decoded, checked]) if self._decoded else checked
        if self._decoded and kept:  # rows of both kinds: back in the order they were added
            table = table.take(pc.sort_indices(pa.array(self._decoded_positions + kept)))
        batch = EventsBatch(table, rejected, self._undecodable)
        self._empty()
        return batch


def events_batch(rows: Sequence[tuple[Any, ...]]) -> EventsBatch:
    """The rows (``analytics.mapping``) as one Arrow table, column by column; a row with a
    value that does not check or convert is left out, with the reason."""
    builder = EventsBatchBuilder()
    for row in rows:
        builder.add(row)
    return builder.finish()


def _checked(
    struct: pa.StructArray, positions: list[int], rejected: dict[int, str]
) -> tuple[pa.Table, list[int], dict[int, str]]:
    """Each column of the converted rows checked and converted; a row whose value fails is
    left out, with the field, the value and the reason (``positions[i]`` is the index of
    the struct's row ``i`` among the rows given; ``rejected`` holds the type errors).
    Returns the table, the positions of its rows, and every rejection."""
    rejected = dict(rejected)
    raw = struct.flatten()
    arrays: list[pa.Array] = []
    failed: dict[int, str] = {}  # by position in ``raw``
    for values, (name, _read_as, check) in zip(raw, _EVENT_FIELDS, strict=True):
        if check is None:
            arrays.append(values)
            continue
        try:
            arrays.append(check(values))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            for position, reason in _failures(values, check):
                failed.setdefault(position, f"{name}: {reason}")
            arrays.append(values)
    if failed:
        keep = pa.array([position not in failed for position in range(len(positions))])
        arrays = [
            check(values.filter(keep)) if check else values.filter(keep)
            for values, (_name, _read_as, check) in zip(raw, _EVENT_FIELDS, strict=True)
        ]
        rejected.update((positions[position], reason) for position, reason in failed.items())
        positions = [at for index, at in enumerate(positions) if index not in failed]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA), positions, rejected


def _type_error(row: tuple[Any, ...]) -> str:
    """Which field of a row Arrow could not read, and why."""
    for value, (name, read_as, _check) in zip(row, _EVENT_FIELDS, strict=False):
        try:
            pa.array([value], type=read_as)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            return f"{name}: {value!r}: {error}"
    return f"a row of {len(row)} values, not {len(_EVENT_FIELDS)}"

"""The COPY text of a batch's rows: one f-string per line, escaped where text can need it.

psycopg's ``write_row`` adapts each value on its own, and was the writer's hottest path; a
line built at once is several times cheaper. Only free text can hold the characters COPY
escapes (backslash, tab, newline, carriage return); codes and ids are written as they are,
which ``admission`` makes safe (printable ASCII codes) before a batch is planned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg

from ledger_writer.rows import Row

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_CHUNK_CHARS = 1 << 20
_NULL = "\\N"


def _free(value: object) -> str:
    return _NULL if value is None else str(value).translate(_ESCAPES)


def _opt(value: object) -> str:
    return _NULL if value is None else str(value)


#: What json.dumps(default=str) wrote before, through orjson: times and dataclasses as their
#: str(), keys that are not strings as their text. Non-ASCII stays UTF-8 (the same JSONB).
_JSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def json_text(value: object) -> str:
    if type(value) is dict and not value:
        return "{}"
    return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode().translate(_ESCAPES)


def time_text(now: datetime) -> Callable[[datetime], str]:
    """isoformat, each time formatted once per batch: the batch's own time is on most rows,
    and a command's request time is on its transaction row and its INITIATED event."""
    texts = {now: now.isoformat()}

    def text(value: datetime) -> str:
        found = texts.get(value)
        if found is None:
            found = texts[value] = value.isoformat()
        return found

    return text


def tx_line(r: Row, t: Callable[[datetime], str]) -> str:
    return (
        f"{r[0]}\t{r[1]}\t{r[2]}\t{_opt(r[3])}\t{_opt(r[4])}\t{_free(r[5])}\t{r[6]}\t{r[7]}\t"
        f"{r[8]}\t{r[9]}\t{_free(r[10])}\t{json_text(r[11])}\t{t(r[12])}\t"
        f"{t(r[13])}\t{_NULL if r[14] is None else t(r[14])}\t{_free(r[15])}\t"
        f"{_free(r[16])}\t{_free(r[17])}\t{_opt(r[18])}\n"
    )


def json_memo() -> Callable[[dict[str, Any]], str]:
    """``json_text`` of dicts of strings, each distinct one written once per batch: a transfer's
    three events carry the same ``{"client_id": ...}``. Only strings: 1 and True, or
    Decimal("1.0") and Decimal("1.00"), are equal keys with different JSON."""
    texts: dict[Row, str] = {}

    def text(value: dict[str, Any]) -> str:
        if type(value) is not dict or set(map(type, value.values())) - {str}:
            return json_text(value)
        key = tuple(value.items())
        found = texts.get(key)
        if found is None:
            found = texts[key] = json_text(value)
        return found

    return text


def event_line(
    r: Row, t: Callable[[datetime], str], json_of: Callable[[dict[str, Any]], str]
) -> str:
    return (
        f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{json_of(r[4])}\t{_opt(r[5])}\t{_free(r[6])}\t{t(r[7])}\n"
    )


def entry_line(r: Row, t: Callable[[datetime], str]) -> str:
    return (
        f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4]}\t{r[5]}\t{t(r[6])}\t{r[7]}\t"
        f"\\\\x{r[8].hex()}\t\\\\x{r[9].hex()}\n"
    )


def numeric_array(values: Iterable[Decimal]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def copy_text(cur: psycopg.Cursor, table: str, columns: str, lines: Iterable[str]) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        chunk: list[str] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= _COPY_CHUNK_CHARS:
                copy.write("".join(chunk).encode())
                chunk, size = [], 0
        if chunk:
            copy.write("".join(chunk).encode())

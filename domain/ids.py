"""UUIDs that keep their text: the ledger writes every id as text many times per transfer.

``uuid.UUID`` is pure Python: parsing one costs about as much as decoding a small JSON
record, and ``str()`` formats it anew on every call. A transfer's ids are written as text
in up to eight places (COPY lines, the hash chain, the outbox record), so the ledger's hot
path reads ids from records as ``TextUUID`` (parsed once, text kept) and makes its row ids
the same way. A ``TextUUID`` *is* a ``uuid.UUID``: equal to, hashed like and interchangeable
with the plain one (psycopg and pydantic handle it as a UUID).
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Iterable, Iterator

_setattr = object.__setattr__
_SAFE = uuid.SafeUUID.unknown


class TextUUID(uuid.UUID):
    """A UUID built from (or with) its canonical text, which ``str()`` returns as is."""

    __slots__ = ("_text",)
    _text: str

    def __str__(self) -> str:
        return self._text

    def __reduce__(self) -> tuple[type[uuid.UUID], tuple[str]]:
        return (uuid.UUID, (self._text,))


def _make(value: int, text: str) -> TextUUID:
    made = object.__new__(TextUUID)
    _setattr(made, "int", value)
    _setattr(made, "is_safe", _SAFE)
    _setattr(made, "_text", text)
    return made


_CANONICAL = re.compile(
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII
).fullmatch


def parse_canonical(text: object) -> TextUUID | None:
    """The UUID of a canonical text (lowercase, 8-4-4-4-12 hex), or None for anything else:
    the caller decides what other spellings mean (pydantic accepts more of them)."""
    if type(text) is not str or not _CANONICAL(text):
        return None
    return _make(int(text.replace("-", ""), 16), text)


def with_text(value: uuid.UUID) -> TextUUID:
    """The same UUID keeping its text (formatted once here)."""
    if type(value) is TextUUID:
        return value
    return _make(value.int, str(value))


def _row_id_base() -> tuple[int, str]:
    """A UUIDv7-shaped base: a millisecond clock, random bits, and 24 low bits left for a
    counter, so a batch's rows append to the primary-key indexes instead of touching random
    pages, and no id costs a call to the OS's random source."""
    millis = time.time_ns() // 1_000_000
    base = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | secrets.randbits(12) << 64
    base |= 0b10 << 62 | secrets.randbits(38) << 24
    text = str(uuid.UUID(int=base))
    return base, text[:30]  # the last 6 hex digits are the counter's


def row_ids() -> Iterator[TextUUID]:
    """Fresh, unique, time-ordered row ids (entries, events): 16 M from each base, then a
    new base."""
    while True:
        base, prefix = _row_id_base()
        for n in range(1 << 24):
            yield _make(base | n, f"{prefix}{n:06x}")


_ids = row_ids()


def next_row_id() -> TextUUID:
    return next(_ids)


def uuid_array(ids: Iterable[uuid.UUID]) -> str:
    """A uuid[] literal for ``%s::uuid[]``: psycopg adapts a list of UUIDs one by one in
    Python, which costs more than the query."""
    return "{" + ",".join(map(str, ids)) + "}"

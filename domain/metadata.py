"""The bounds of a request's ``metadata``: small, flat, and storable everywhere. Pure.

Metadata carries channel facts for fraud scoring (``channel``, ``terminal_id``, ...). Every
consumer stores it: PostgreSQL JSONB, Kafka records, ClickHouse columns, the ledger's COPY
lines. An integer outside 64 bits is storable in none of those fast paths (one such request
once stopped the ledger writer), so the API refuses, before anything is accepted:

- more than ``METADATA_ENTRIES_MAX`` entries (as before: the schema's own bound);
- a key that is not 1-64 ASCII letters, digits or ``_ . : -``, or a reserved key;
- a value that is not a string, integer, boolean or null (as before), an integer outside
  int64, a string longer than ``METADATA_TEXT_LENGTH_MAX`` or holding a character free
  text may not hold (domain/text.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from domain.exceptions import InvalidMetadata
from domain.text import check_text

METADATA_ENTRIES_MAX = 32
METADATA_KEY_LENGTH_MAX = 64
METADATA_TEXT_LENGTH_MAX = 256
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: Set by the API itself, never by a caller: a reversal is asked for on its own route.
RESERVED_KEYS = frozenset({"reversal_of"})
KEY_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
_KEY = re.compile(r"[A-Za-z0-9_.:\-]{1,64}", re.ASCII)

MetadataValue = str | int | bool | None


def check_metadata(metadata: Mapping[str, MetadataValue]) -> Mapping[str, MetadataValue]:
    """``metadata`` itself if every entry is within bounds; else ``InvalidMetadata`` (or
    ``InvalidText`` for a character that is not text).

    >>> check_metadata({"channel": "pos", "n": 7})
    {'channel': 'pos', 'n': 7}
    """
    if len(metadata) > METADATA_ENTRIES_MAX:
        raise InvalidMetadata(f"metadata holds at most {METADATA_ENTRIES_MAX} entries")
    for key, value in metadata.items():
        check_text(key, "a metadata key")
        if not _KEY.fullmatch(key):
            raise InvalidMetadata(
                f"metadata key {key[:80]!r} must be 1-{METADATA_KEY_LENGTH_MAX} ASCII letters, "
                "digits or _ . : -"
            )
        if key in RESERVED_KEYS:
            raise InvalidMetadata(f"metadata key {key!r} is set by the API, not by callers")
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                raise InvalidMetadata(f"metadata.{key}: integers must fit in 64 bits (int64)")
        elif isinstance(value, str):
            if len(value) > METADATA_TEXT_LENGTH_MAX:
                raise InvalidMetadata(
                    f"metadata.{key}: strings hold at most {METADATA_TEXT_LENGTH_MAX} characters"
                )
            check_text(value, f"metadata.{key}")
        else:
            raise InvalidMetadata(f"metadata.{key}: must be a string, integer, boolean or null")
    return metadata

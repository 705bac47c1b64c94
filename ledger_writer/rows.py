"""The shape of the rows the writer moves between PostgreSQL, COPY text and its plans.

A row is a plain tuple in its table's column order (what psycopg returns and COPY takes);
its columns are named where it is built (``ledger_writer.book``), not in the type.
"""

from __future__ import annotations

from typing import Any, TypeAlias

Row: TypeAlias = tuple[Any, ...]

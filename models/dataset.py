"""Labelled transaction files for training and evaluation (CSV or Parquet).

Columns (names are case-sensitive; the alternatives in brackets are accepted too):

| column | meaning |
| --- | --- |
| ``transaction_id`` | unique id of the transaction |
| ``timestamp`` | when it happened: ISO-8601 (UTC if no zone) or seconds since 1970-01-01 |
| ``customer_id`` [``wallet_id``] | who pays: the card, customer or wallet |
| ``terminal_id`` [``counterparty_id``] | where it was paid: POS terminal, merchant or payee |
| ``amount`` | a number >= 0, in the currency's units (0.00 is accepted with a warning) |
| ``label`` | 1 if fraudulent (confirmed fraud or chargeback), else 0 |

Extra columns are kept (``scenario`` for example) but not used as features.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from models.exceptions import DatasetError

ALIASES = {"wallet_id": "customer_id", "counterparty_id": "terminal_id"}
REQUIRED = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "label")
ROWS_MAX = 50_000_000


def _warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def load(path: Path, warn: Callable[[str], None] = _warn_on_stderr) -> pd.DataFrame:
    """Read, validate and sort a labelled file; add ``time_s`` (epoch seconds) and ``day``.
    What is accepted but worth knowing (amounts of 0.00) goes to ``warn``."""
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".gz"):
            frame = pd.read_csv(path)
        else:
            raise DatasetError(f"{path}: give a .csv or .parquet file")
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot be read: {error}") from None
    return validate(frame.rename(columns=ALIASES), str(path), warn)


def write(frame: pd.DataFrame, path: Path) -> Path:
    """Write a labelled file, CSV or Parquet by the suffix (what ``load`` reads back)."""
    validate(frame, str(path))  # never write a file that ``load`` would refuse
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DatasetError(f"{path}: give a .csv or .parquet file")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot be written: {error}") from None
    return path


def validate(
    frame: pd.DataFrame, source: str = "data", warn: Callable[[str], None] = _warn_on_stderr
) -> pd.DataFrame:
    """The file as the models read it, or DatasetError naming the first problem. Amounts of
    0.00 are kept, with one warning: the Handbook's generator makes a few (a negative draw
    redrawn as uniform from 0, rounded to cents), and refusing its files would refuse the
    benchmark; a zero amount scores and trains like any other."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DatasetError(f"{source}: missing column(s) {missing}; see models/dataset.py")
    if len(frame) == 0 or len(frame) > ROWS_MAX:
        raise DatasetError(f"{source}: {len(frame)} rows; give 1 to {ROWS_MAX}")
    frame = frame.copy()
    frame["timestamp"] = _timestamps(frame["timestamp"], source)
    amount = pd.to_numeric(frame["amount"], errors="coerce")
    bad = amount.isna() | (amount < 0) | np.isinf(amount)
    if bad.any():
        raise DatasetError(
            f"{source}: {int(bad.sum())} row(s) with an amount that is not a "
            f"number >= 0, first at row {int(np.flatnonzero(bad)[0])}"
        )
    zero = amount == 0
    if zero.any():
        warn(
            f"{source}: {int(zero.sum())} row(s) with an amount of 0.00, first at row "
            f"{int(np.flatnonzero(zero)[0])}; kept"
        )
    frame["amount"] = amount.astype(float)
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if not labels.isin([0, 1]).all():
        raise DatasetError(f"{source}: column 'label' must be 0 or 1")
    frame["label"] = labels.astype(np.int8)
    if frame["transaction_id"].duplicated().any():
        raise DatasetError(f"{source}: transaction_id is not unique")
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame["terminal_id"] = frame["terminal_id"].astype(str)
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    frame["time_s"] = ((frame["timestamp"] - epoch) // pd.Timedelta(seconds=1)).astype(np.int64)
    frame["day"] = (frame["time_s"] // 86_400).astype(np.int64)
    return frame


def _timestamps(column: pd.Series, source: str) -> pd.Series:
    """Epoch seconds (numbers, or numeric strings) and ISO-8601 strings, mixed if need be."""
    if pd.api.types.is_datetime64_any_dtype(column):  # Parquet keeps real timestamps
        return (
            column.dt.tz_convert("UTC")
            if column.dt.tz is not None
            else column.dt.tz_localize("UTC")
        )
    as_number = pd.to_numeric(column, errors="coerce")
    parsed = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
    numeric = as_number.notna()
    if numeric.any():
        parsed[numeric] = pd.to_datetime(as_number[numeric], unit="s", utc=True)
    if (~numeric).any():
        try:
            parsed[~numeric] = pd.to_datetime(
                column[~numeric].astype(str), utc=True, format="mixed"
            )
        except (ValueError, TypeError) as error:
            raise DatasetError(f"{source}: column 'timestamp' is not a time: {error}") from None
    if parsed.isna().any():
        raise DatasetError(
            f"{source}: column 'timestamp' is not a time in {int(parsed.isna().sum())} row(s)"
        )
    return parsed

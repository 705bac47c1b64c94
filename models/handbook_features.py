"""The Fraud Detection Handbook's 15 baseline features, computed as the Handbook does.

Le Borgne et al., *Reproducible Machine Learning for Credit Card Fraud Detection —
Practical Handbook*, chapter 3.4 ("Baseline feature transformation"), for a like-for-like
baseline in ``walletpipe models evaluate``:

- ``amount``; ``is_weekend`` (Saturday or Sunday); ``is_night`` (hour <= 6: the Handbook's
  ``tx_hour <= 6``, so 06:59 is night);
- customer count and mean amount over the rolling windows (t - w, t] for w = 1, 7, 30 days,
  the transaction itself included;
- terminal count and fraud share over the rolling windows (t - d - w, t - d], with the
  label delay d = 7 days: the Handbook's ``rolling(d + w) - rolling(d)``; a share over no
  transactions is 0.

These are not the champion's features (``models.features``, one event at a time, for the
stream): they exist so the baselines are the Handbook's own, computed over the whole file
at once with pandas' time-based rolling windows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HANDBOOK_WINDOWS_DAYS = (1, 7, 30)
#: The Handbook's ``TX_DURING_NIGHT``: ``tx_hour <= 6``.
NIGHT_LAST_HOUR = 6
HANDBOOK_FEATURES: tuple[str, ...] = (
    "amount",
    "is_weekend",
    "is_night",
    *(f"customer_nb_{w}d" for w in HANDBOOK_WINDOWS_DAYS),
    *(f"customer_avg_{w}d" for w in HANDBOOK_WINDOWS_DAYS),
    *(f"terminal_nb_{w}d" for w in HANDBOOK_WINDOWS_DAYS),
    *(f"terminal_risk_{w}d" for w in HANDBOOK_WINDOWS_DAYS),
)


def handbook_features(frame: pd.DataFrame, delay_days: int = 7) -> pd.DataFrame:
    """The 15 features of every row of a validated file (``models.dataset``: ``time_s``,
    ``customer_id``, ``terminal_id``, ``amount``, ``label``), indexed as ``frame``.

    Every window is (start, end] in seconds, as pandas' ``rolling('Nd')`` is. A customer's
    window ends at the row itself, as a rolling window does: of two rows at the same second,
    the later in the file counts the earlier, not the other way round."""
    time_s = frame["time_s"].to_numpy(np.int64)
    seconds_of_day = time_s % 86_400
    weekday = (time_s // 86_400 + 3) % 7  # 1970-01-01 was a Thursday
    out = pd.DataFrame(index=frame.index)
    out["amount"] = frame["amount"].astype(float)
    out["is_weekend"] = (weekday >= 5).astype(float)
    out["is_night"] = (seconds_of_day // 3_600 <= NIGHT_LAST_HOUR).astype(float)
    amount = frame["amount"].to_numpy(float)
    label = frame["label"].to_numpy(float)
    for w in HANDBOOK_WINDOWS_DAYS:
        count, total = _window_sums(frame["customer_id"], time_s, amount, w * 86_400, 0)
        out[f"customer_nb_{w}d"] = count
        out[f"customer_avg_{w}d"] = total / count
    delay_s = delay_days * 86_400
    for w in HANDBOOK_WINDOWS_DAYS:
        count, frauds = _window_sums(frame["terminal_id"], time_s, label, w * 86_400, delay_s)
        out[f"terminal_nb_{w}d"] = count
        out[f"terminal_risk_{w}d"] = np.divide(
            frauds, count, out=np.zeros_like(frauds), where=count > 0
        )
    return out[list(HANDBOOK_FEATURES)]


def _window_sums(
    key: pd.Series, time_s: np.ndarray, values: np.ndarray, span_s: int, lag_s: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many rows of the same ``key`` fall in (t - lag - span, t - lag], and
    the sum of their ``values``. Sorted by key then time, each bound is one binary search
    inside the key's run (vectorised: no per-group Python loop)."""
    codes = pd.factorize(key)[0].astype(np.int64)
    order = np.lexsort((np.arange(len(codes)), time_s, codes))
    sorted_codes, sorted_times = codes[order], time_s[order]
    # A composite that orders by key first, then time: searchsorted on it stays in the run.
    span = int(sorted_times.max() - sorted_times.min()) + span_s + lag_s + 2
    base = sorted_times.min() - span_s - lag_s - 1
    composite = sorted_codes * span + (sorted_times - base)
    upper_keys = sorted_codes * span + (sorted_times - lag_s - base)
    lower_keys = upper_keys - span_s
    if lag_s:
        upper = np.searchsorted(composite, upper_keys, side="right")
    else:  # up to the row itself: a rolling window does not see later rows of its second
        upper = np.arange(1, len(order) + 1)
    lower = np.searchsorted(composite, lower_keys, side="right")
    cumulative = np.concatenate([[0.0], np.cumsum(values[order])])
    count = np.empty(len(order), dtype=float)
    total = np.empty(len(order), dtype=float)
    count[order] = (upper - lower).astype(float)
    total[order] = cumulative[upper] - cumulative[lower]
    return count, total

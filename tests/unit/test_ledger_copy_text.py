"""The COPY text the ledger store writes: JSON columns and times as PostgreSQL reads them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ledger_writer import copy_text


def test_json_columns_hold_what_json_dumps_held_escaped_for_copy() -> None:
    value = {"client_id": "c", "note": 'tab\there "q" back\\slash é', "n": 3, "ok": True}
    text = copy_text.json_text(value)
    unescaped = text.replace("\\\\", "\\")
    assert json.loads(unescaped) == value
    assert "\t" not in text and "\n" not in text
    assert copy_text.json_text({}) == "{}"


def test_the_json_memo_writes_each_dict_of_strings_once_and_never_mixes_up_values() -> None:
    memo = copy_text.json_memo()
    first = memo({"client_id": "a"})
    assert memo({"client_id": "a"}) is first
    assert memo({"client_id": "b"}) == copy_text.json_text({"client_id": "b"})
    assert memo({"k": 1}) == '{"k":1}' and memo({"k": True}) == '{"k":true}'
    assert memo({"k": Decimal("1.0")}) == '{"k":"1.0"}'
    assert memo({"k": Decimal("1.00")}) == '{"k":"1.00"}'


def test_times_are_formatted_once_per_batch_and_correctly() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    text = copy_text.time_text(now)
    later = now + timedelta(microseconds=5)
    assert text(now) == now.isoformat() and text(later) == later.isoformat()
    assert text(later) is text(now + timedelta(microseconds=5))

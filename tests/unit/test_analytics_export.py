"""analytics.export: CSV + JSON per period, a signed manifest, byte-identical repeats."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from analytics import export
from analytics.exceptions import ManifestInvalid
from analytics.ranges import parse_period
from analytics.regulatory import Movement, Rules, detect

KEY = b"test-signing-key"
DAY = datetime(2026, 3, 10, tzinfo=UTC)
PERIOD = parse_period("2026-03-10", ZoneInfo("UTC"), days_max=92)


def reports():  # noqa: ANN201
    user = uuid.UUID(int=7)
    moves = [
        Movement(
            transaction_id=uuid.UUID(int=i),
            transaction_type="DEPOSIT",
            at=DAY + timedelta(hours=i),
            amount=Decimal("9000.50"),
            currency_code="EUR",
            destination_user_id=user,
            destination_wallet_id=uuid.UUID(int=99),
        )
        for i in (1, 2, 3)
    ]
    return detect(moves, [], Rules(), PERIOD.start, PERIOD.end)


def test_an_export_has_csv_json_and_a_manifest_listing_them() -> None:
    built = export.build(PERIOD, "UTC", reports(), KEY)
    assert sorted(built.files) == [
        "regulatory-2026-03-10.csv",
        "regulatory-2026-03-10.json",
        "regulatory-2026-03-10.manifest.json",
    ]
    manifest = built.manifest
    assert [f["name"] for f in manifest["files"]] == sorted(built.files)[:2]
    assert manifest["report_counts"]["CURRENCY_TRANSACTION"] == 1
    assert manifest["report_counts"]["STRUCTURING_24H"] == 1
    assert manifest["signature"]["algorithm"] == "HMAC-SHA256"
    document = json.loads(built.files["regulatory-2026-03-10.json"])
    assert document["period"] == "2026-03-10" and len(document["reports"]) == 2


def test_csv_has_one_line_per_piece_of_evidence_with_exact_amounts() -> None:
    built = export.build(PERIOD, "UTC", reports(), KEY)
    lines = list(csv.DictReader(io.StringIO(built.files["regulatory-2026-03-10.csv"].decode())))
    assert len(lines) == 6  # two reports, three deposits each
    assert {line["amount"] for line in lines} == {"9000.5000"}
    assert {line["total_amount"] for line in lines} == {"27001.5000"}


def test_exporting_twice_gives_byte_identical_files() -> None:
    first = export.build(PERIOD, "UTC", reports(), KEY)
    second = export.build(PERIOD, "UTC", list(reversed(reports())), KEY)
    assert first.files == second.files


def test_the_manifest_verifies_and_any_change_is_caught() -> None:
    built = export.build(PERIOD, "UTC", reports(), KEY)
    name = built.manifest_name
    assert export.verify(built.files[name], built.files, KEY)["period"] == "2026-03-10"

    tampered = dict(built.files)
    tampered["regulatory-2026-03-10.csv"] = tampered["regulatory-2026-03-10.csv"].replace(
        b"9000.5000", b"900.5000"
    )
    with pytest.raises(ManifestInvalid, match="sha256"):
        export.verify(built.files[name], tampered, KEY)

    with pytest.raises(ManifestInvalid, match="signature"):
        export.verify(built.files[name], built.files, b"another key")

    forged = json.loads(built.files[name])
    forged["report_counts"]["STRUCTURING_24H"] = 0
    with pytest.raises(ManifestInvalid, match="signature"):
        export.verify(json.dumps(forged).encode(), built.files, KEY)

    missing = {n: d for n, d in built.files.items() if not n.endswith(".json") or n == name}
    with pytest.raises(ManifestInvalid, match="missing"):
        export.verify(built.files[name], missing, KEY)


def test_garbage_is_not_a_manifest() -> None:
    with pytest.raises(ManifestInvalid):
        export.verify(b"[1, 2]", {}, KEY)


def test_an_empty_period_still_exports_signed_empty_files() -> None:
    built = export.build(PERIOD, "UTC", [], KEY)
    assert built.files["regulatory-2026-03-10.csv"].decode().count("\n") == 1  # the header
    assert set(built.manifest["report_counts"].values()) == {0}
    export.verify(built.files[built.manifest_name], built.files, KEY)


def test_the_key_file_is_made_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.key"
    key = export.read_or_make_key(path)
    assert len(key) == 64 and export.read_or_make_key(path) == key
    assert path.stat().st_mode & 0o777 == 0o600

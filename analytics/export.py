"""Regulatory exports: a period's reports as CSV and JSON files plus a signed manifest.

Deterministic: the same reports give byte-identical files (sorted reports, sorted keys, no
wall-clock time anywhere), so exporting a period twice gives the same files and the same
signature. The manifest lists each file's sha256 and size and is signed with HMAC-SHA256
over its canonical JSON (sorted keys, no spaces) without the ``signature`` member.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analytics.exceptions import ManifestInvalid, SigningKeyMissing
from analytics.ranges import Period
from analytics.regulatory import Report, ReportType, iso
from analytics.settings import AnalyticsSettings

FORMAT = "wallet-pipeline/regulatory-export"
FORMAT_VERSION = 1
ALGORITHM = "HMAC-SHA256"
CSV_COLUMNS = (
    "report_id",
    "report_type",
    "category",
    "occurred_at",
    "business_day",
    "subject_user_id",
    "subject_wallet_id",
    "currency_code",
    "total_amount",
    "transaction_count",
    "reason",
    "transaction_id",
    "transaction_type",
    "transaction_at",
    "amount",
    "direction",
    "risk_score",
    "decision",
)


@dataclass(frozen=True)
class Export:
    manifest_name: str
    files: dict[str, bytes]  # every file, the manifest included

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(self.files[self.manifest_name])


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def sign(body: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical(dict(body)), hashlib.sha256).hexdigest()


def render_json(period: Period, zone: str, records: Sequence[dict[str, Any]]) -> bytes:
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "period": period.label,
        "from": iso(period.start),
        "to": iso(period.end),
        "business_timezone": zone,
        "reports": list(records),
    }
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def render_csv(records: Sequence[dict[str, Any]]) -> bytes:
    """One line per piece of evidence, the report's columns repeated on each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        head = [record[name] for name in CSV_COLUMNS[:11]]
        for item in record["evidence"]:
            writer.writerow(
                [
                    *("" if value is None else value for value in head),
                    item["transaction_id"],
                    item["transaction_type"],
                    item["at"],
                    item["amount"],
                    item["direction"],
                    item["risk_score"] or "",
                    item["decision"] or "",
                ]
            )
    return out.getvalue().encode()


def build(period: Period, zone: str, reports: Sequence[Report], key: bytes) -> Export:
    records = [r.to_record() for r in sorted(reports, key=lambda r: r.sort_key)]
    stem = f"regulatory-{period.label}"
    files = {
        f"{stem}.csv": render_csv(records),
        f"{stem}.json": render_json(period, zone, records),
    }
    counts = {t.value: 0 for t in ReportType}
    for record in records:
        counts[record["report_type"]] += 1
    body = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "period": period.label,
        "from": iso(period.start),
        "to": iso(period.end),
        "business_timezone": zone,
        "report_counts": counts,
        "files": [
            {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in sorted(files.items())
        ],
    }
    manifest = {
        **body,
        "signature": {"algorithm": ALGORITHM, "key_id": key_id(key), "value": sign(body, key)},
    }
    manifest_name = f"{stem}.manifest.json"
    files[manifest_name] = (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode()
    return Export(manifest_name, files)


def verify(manifest_bytes: bytes, files: Mapping[str, bytes], key: bytes) -> dict[str, Any]:
    """Check the signature, then every listed file; return the manifest or raise."""
    try:
        manifest = json.loads(manifest_bytes)
        signature = manifest.pop("signature")
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ManifestInvalid("the manifest is not a signed export manifest") from None
    if signature.get("algorithm") != ALGORITHM:
        raise ManifestInvalid(f"unsupported signature algorithm {signature.get('algorithm')!r}")
    if not hmac.compare_digest(str(signature.get("value", "")), sign(manifest, key)):
        raise ManifestInvalid(
            "the manifest's signature does not match (altered, or signed with another key: "
            f"key id {signature.get('key_id')}, ours {key_id(key)})"
        )
    for entry in listed:
        data = files.get(entry["name"])
        if data is None:
            raise ManifestInvalid(f"file {entry['name']} is missing")
        if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != entry["bytes"]:
            raise ManifestInvalid(f"file {entry['name']} does not match its sha256")
    return {**manifest, "signature": signature}


def signing_key(settings: AnalyticsSettings) -> bytes:
    """REGULATORY_SIGNING_KEY, else the key file (made once, mode 0600, random)."""
    if settings.regulatory_signing_key is not None:
        return settings.regulatory_signing_key.get_secret_value().encode()
    path = settings.signing_key_file
    if path is None:
        raise SigningKeyMissing("set REGULATORY_SIGNING_KEY to sign regulatory exports")
    return read_or_make_key(path)


def read_or_make_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip().encode()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip().encode()

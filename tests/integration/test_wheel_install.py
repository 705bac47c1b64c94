"""`pip install` of the project's wheel gives working services, with or without the sink's
native decoder (which only infra/bootstrap.sh builds: the wheel is pure Python).

The wheel is built from the checkout's files and installed into a fresh virtualenv whose
third-party packages come from the project's `.venv` (a path in a .pth file, so the
editable install of the checkout there is NOT picked up). Everything then runs from a
directory outside the checkout, so only the wheel's copy of the project can be imported.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

#: Run inside the installed virtualenv: every service's entry module imports, package data
#: is there, and the sink decodes records in Python when the extension is absent.
CHECK = r"""
import sys
sys.modules["sink_decoder"] = None  # as on a machine where the Rust build never ran
from importlib import resources
import analytics.service, ingest_api.app, ledger_writer.writer, ledger_writer.gateway
import streams, walletpipe.cli, infra.stack
from analytics.clickhouse import NATIVE_DECODER, EventsBatchBuilder
from domain import records
from tests_sample import request
assert NATIVE_DECODER is None, "the blocked extension was imported"
for module in (analytics.service, ingest_api.app, ledger_writer.writer, walletpipe.cli):
    assert module.__file__.startswith(sys.prefix), module.__file__
assert resources.files("analytics").joinpath("static/dashboard.html").is_file()
sql = [p.name for p in resources.files("infra").joinpath("migrations").iterdir()]
assert "0001_seed_schema.sql" in sql, sql
builder = EventsBatchBuilder()
builder.add_record("transactions.requested", records.encode(request()))
batch = builder.finish()
assert batch.table.num_rows == 1 and not batch.rejected and not batch.undecodable
print("wheel ok")
"""

SAMPLE = """
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from domain import records
from domain.transactions import TransactionType

def request():
    return records.TransactionRequested(
        transaction_id=uuid.uuid4(), transaction_type=TransactionType.DEPOSIT,
        source_wallet_id=None, destination_wallet_id=uuid.uuid4(), source_user_id=None,
        destination_user_id=uuid.uuid4(), kyc_status=None, amount=Decimal("12.5000"),
        fee_amount=Decimal("0.0000"), total_amount=Decimal("12.5000"), currency_code="USD",
        description=None, client_id=uuid.uuid4(), idempotency_key="k", ip_address=None,
        user_agent=None, metadata={}, requested_at=datetime.now(UTC))
"""


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{argv[:4]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_the_wheel_runs_every_service_without_the_native_decoder(tmp_path: Path) -> None:
    source = tmp_path / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        path = REPO / name.decode()
        if path.is_file():  # a file deleted but not yet committed is skipped
            (source / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name.decode())
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
        tmp_path,
    )
    wheel = next(dist.glob("wallet_pipeline-*.whl"))

    venv = tmp_path / "venv"
    _run(
        [
            getattr(sys, "_base_executable", sys.executable),
            "-m",
            "venv",
            "--without-pip",
            str(venv),
        ],
        tmp_path,
    )
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        tmp_path,
    )

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "tests_sample.py").write_text(SAMPLE)
    assert "wheel ok" in _run([str(python), "-c", CHECK], work)
    assert "usage" in _run([str(venv / "bin" / "walletpipe"), "--help"], work).lower()

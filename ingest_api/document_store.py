"""Where identity documents' bytes are kept: a directory (``KYC_DOCUMENT_DIR``), one file
per document named by its id, written whole (a temporary file renamed into place) and
readable by the API's own user only. PostgreSQL keeps the metadata and the reference
(``dir:<document id>``), never the bytes; Kafka and ClickHouse never see either.

The store is written before the metadata row is committed and the file removed if that
commit fails, so a row never names a missing file.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

REFERENCE_PREFIX = "dir:"


class DocumentStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, document_id: uuid.UUID) -> Path:
        return self.root / str(document_id)

    def reference(self, document_id: uuid.UUID) -> str:
        return f"{REFERENCE_PREFIX}{document_id}"

    def _put(self, document_id: uuid.UUID, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = self._path(document_id)
        partial = final.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, final)

    async def put(self, document_id: uuid.UUID, data: bytes) -> str:
        await asyncio.to_thread(self._put, document_id, data)
        return self.reference(document_id)

    async def get(self, reference: str) -> bytes | None:
        if not reference.startswith(REFERENCE_PREFIX):
            return None
        path = self._path(uuid.UUID(reference[len(REFERENCE_PREFIX) :]))
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def discard(self, document_id: uuid.UUID) -> None:
        await asyncio.to_thread(self._path(document_id).unlink, True)

"""Records accepted requests in ``transaction_requests``, many in one statement.

Recording is the commit point of a request (ingest_api.outages): the row is what the relay
publishes if Kafka never acknowledged the record, and its unique (client, Idempotency-Key)
is what makes a repeat return the first answer in every API process. It is also the one
PostgreSQL round trip left on the hot path, so requests share it: while one INSERT runs,
the requests that arrive wait for the next, which carries all of them (group commit). A
lone request costs one round trip as before; under load a round trip carries up to
``batch_max`` requests, and the batch endpoint's items go in together.

A request whose (client, key) is taken already gets the earlier request back, read in one
more statement for all such requests of the batch (retries are rare).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime

import orjson
from psycopg_pool import AsyncConnectionPool

from ingest_api.exceptions import NotAccepted
from ingest_api.repository import AcceptedRequest

#: The batch travels as one JSON text (the records inside as they are, not re-encoded):
#: one parameter to send instead of six arrays to adapt.
_INSERT_SQL = """
INSERT INTO transaction_requests (transaction_id, client_id, idempotency_key, request_hash,
                                  record, created_at)
SELECT t.transaction_id, t.client_id, t.idempotency_key, t.request_hash, t.record,
       t.created_at
  FROM jsonb_to_recordset(%s::jsonb)
       AS t(transaction_id uuid, client_id uuid, idempotency_key text, request_hash text,
            record jsonb, created_at timestamptz)
ON CONFLICT (client_id, idempotency_key) DO NOTHING
RETURNING transaction_id
"""
_EARLIER_SQL = """
SELECT r.client_id, r.idempotency_key, r.transaction_id, r.request_hash, r.record,
       r.published_at IS NOT NULL
  FROM transaction_requests r
  JOIN unnest(%s::uuid[], %s::text[]) AS k(client_id, idempotency_key)
 USING (client_id, idempotency_key)
"""


@dataclass(frozen=True)
class RequestToRecord:
    """One accepted request as stored: ``record`` is the JSON published to Kafka."""

    transaction_id: uuid.UUID
    client_id: uuid.UUID
    idempotency_key: str
    request_hash: str
    record: str
    created_at: datetime


#: What recording a request found: None (stored now) or the request stored earlier under
#: the same client and Idempotency-Key.
Recorded = AcceptedRequest | None


def _rows_json(batch: list[RequestToRecord]) -> str:
    return orjson.dumps(
        [
            {
                "transaction_id": r.transaction_id,
                "client_id": r.client_id,
                "idempotency_key": r.idempotency_key,
                "request_hash": r.request_hash,
                "record": orjson.Fragment(r.record),
                "created_at": r.created_at,
            }
            for r in batch
        ]
    ).decode()


class RequestRecorder:
    """Group commit of accepted requests. Bounded: at most ``pending_max`` requests wait;
    past that a request is refused before anything is recorded (503 NOT_ACCEPTED)."""

    def __init__(
        self, pool: AsyncConnectionPool, *, batch_max: int = 1_000, pending_max: int = 20_000
    ) -> None:
        self._pool = pool
        self._batch_max = batch_max
        self._pending_max = pending_max
        self._pending: deque[tuple[RequestToRecord, asyncio.Future[Recorded]]] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def record(self, request: RequestToRecord) -> Recorded:
        return (await self.record_many([request]))[0]

    async def record_many(self, requests: list[RequestToRecord]) -> list[Recorded]:
        """Each request's outcome, in order; raises the database's error if its statement
        failed (then it may or may not have been stored: see ingest_api.outages)."""
        if len(self._pending) + len(requests) > self._pending_max:
            raise NotAccepted("too many requests are waiting to be recorded: retry")
        loop = asyncio.get_running_loop()
        futures = []
        for request in requests:
            future: asyncio.Future[Recorded] = loop.create_future()
            self._pending.append((request, future))
            futures.append(future)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        return list(await asyncio.gather(*futures))

    async def _write_pending(self) -> None:
        while self._pending:
            batch = [
                self._pending.popleft() for _ in range(min(self._batch_max, len(self._pending)))
            ]
            try:
                outcomes = await self._write([request for request, _future in batch])
            except BaseException as error:  # every waiter of the batch hears it
                for _request, future in batch:
                    if not future.done():
                        future.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            for (_request, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)

    async def _write(self, batch: list[RequestToRecord]) -> list[Recorded]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_INSERT_SQL, (_rows_json(batch),))
            stored = {row[0] for row in await cur.fetchall()}
            taken = [r for r in batch if r.transaction_id not in stored]
            earlier: dict[tuple[uuid.UUID, str], AcceptedRequest] = {}
            if taken:
                cur = await conn.execute(
                    _EARLIER_SQL,
                    ([r.client_id for r in taken], [r.idempotency_key for r in taken]),
                )
                for client_id, key, *fields in await cur.fetchall():
                    earlier[(client_id, key)] = AcceptedRequest(*fields)
        outcomes: list[Recorded] = []
        first_of: dict[uuid.UUID, RequestToRecord] = {}
        for request in batch:
            if request.transaction_id in stored:
                first = first_of.setdefault(request.transaction_id, request)
                if first is request:
                    outcomes.append(None)
                else:  # the same key twice in one batch: the first holds it (and is
                    # being published by its own caller: a failure there leaves it to the relay)
                    outcomes.append(
                        AcceptedRequest(
                            first.transaction_id,
                            first.request_hash,
                            json.loads(first.record),
                            True,
                        )
                    )
                continue
            found = earlier.get((request.client_id, request.idempotency_key))
            if found is None:  # the statement neither stored it nor found who holds the key
                raise RuntimeError(f"request {request.transaction_id} was neither stored nor found")
            outcomes.append(found)
        return outcomes

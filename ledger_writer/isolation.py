"""The last resort against a record the writer cannot write: find it, fail it alone.

``admission`` refuses every value known to break a batch before it is planned. Should a
batch still fail for a reason that may lie in its records (PostgreSQL refused a value or a
row, an encoder or the planner raised on something odd, a future bug), it is written again
in halves, each half in its own transaction, down to the one record at fault: that record
fails alone (``UnprocessableRecord`` with the error's text: FAILED, announced,
dead-lettered) and the others commit. Bounded: at most two attempts per record of the
batch, and a depth of log2(batch size).

What cannot come from a record is never retried here and stops the batch: a ledger
invariant breach (``LedgerInvariantError``, the writer stops loudly), the database or Kafka
unavailable (the service loop reconnects). Before splitting, the batch's other work (the
expiry of holds) is done alone: if even that fails, the fault is not in the records and
the original error is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg
from confluent_kafka import KafkaException

from domain.exceptions import LedgerInvariantError, UnprocessableRecord
from ledger_writer.exceptions import LedgerWriterError

log = logging.getLogger("ledger_writer")

M = TypeVar("M")

#: How much of an error's text a reason keeps.
REASON_CHARS_MAX = 300

#: ``attempt(messages, forced)`` writes ``messages`` as one batch, in one transaction;
#: ``forced`` (with a single message) fails that message as unprocessable.
Attempt = Callable[[Sequence[M], UnprocessableRecord | None], None]


def caused_by_records(error: BaseException) -> bool:
    """Whether ``error`` may come from the batch's records rather than from a broken
    invariant, an unreachable database or broker, or the database refusing the writer."""
    if isinstance(error, LedgerInvariantError | LedgerWriterError | KafkaException):
        return False
    if isinstance(error, psycopg.Error):
        # Class 22 (data exception) and 23 (integrity constraint violation) only.
        return isinstance(error, psycopg.DataError | psycopg.IntegrityError)
    return isinstance(error, Exception)


def describe(error: BaseException) -> str:
    """The error as a reason: its type and first line, bounded, storable text."""
    first = (str(error).strip().splitlines() or [""])[0]
    text = f"{type(error).__name__}: {first}"[:REASON_CHARS_MAX]
    return text.replace("\x00", "\ufffd").encode(errors="replace").decode()


def write_isolating(
    batch: Sequence[M],
    attempt: Attempt[M],
    skip: Callable[[M, str], None],
    failure: BaseException,
) -> int:
    """After ``batch`` failed with ``failure`` (a record error), write what can be written
    and fail the record(s) at fault alone; returns how many were failed so. ``skip`` is
    the last resort for a record even whose failure cannot be written: dead-letter it and
    store its offset."""
    log.error(
        "a batch of %d records failed (%s); writing it in halves to find the record at fault",
        len(batch),
        describe(failure),
    )
    try:
        attempt([], None)  # the expiry sweep alone: it must not be what fails
    except Exception as sweep_error:
        if caused_by_records(sweep_error):
            raise failure from sweep_error
        raise
    return _halves(batch, attempt, skip, failure)


def _halves(
    batch: Sequence[M], attempt: Attempt[M], skip: Callable[[M, str], None], failure: BaseException
) -> int:
    if len(batch) == 1:
        return _fail_alone(batch[0], attempt, skip, failure)
    isolated = 0
    middle = len(batch) // 2
    for half in (batch[:middle], batch[middle:]):
        try:
            attempt(half, None)
        except Exception as error:
            if not caused_by_records(error):
                raise
            isolated += _halves(half, attempt, skip, error)
    return isolated


def _fail_alone(
    message: M, attempt: Attempt[M], skip: Callable[[M, str], None], failure: BaseException
) -> int:
    reason = describe(failure)
    log.error("record at fault: %s; failing its transaction alone", reason)
    for row_storable in (True, False):
        try:
            attempt([message], UnprocessableRecord(reason, row_storable=row_storable))
            return 1
        except Exception as error:
            if not caused_by_records(error):
                raise
            log.error("failing it as unprocessable failed too: %s", describe(error))
    skip(message, reason)
    return 1

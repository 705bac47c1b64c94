"""ledger_writer.isolation: a failed batch is written again in halves until the record at
fault fails alone; what cannot come from a record is never retried. The ``attempt`` here
is a stand-in for one database transaction: it commits all of a part, or nothing."""

from __future__ import annotations

import psycopg
import pytest

from domain.exceptions import LedgerInvariantError, UnprocessableRecord
from ledger_writer import isolation
from ledger_writer.exceptions import KafkaUnavailable
from ledger_writer.runner import backoff_s


class Book:
    """Commits parts of a batch; a part holding a negative number fails as PostgreSQL
    refuses a value, unless it is forced (failed as unprocessable)."""

    def __init__(self, *, forced_fails: bool = False, sweep_fails: bool = False) -> None:
        self.committed: list[int] = []
        self.failed_alone: list[tuple[int, bool]] = []
        self.skipped: list[int] = []
        self.attempts = 0
        self.forced_fails = forced_fails
        self.sweep_fails = sweep_fails

    def attempt(self, part, forced: UnprocessableRecord | None) -> None:
        self.attempts += 1
        if not part and self.sweep_fails:
            raise ValueError("the sweep breaks")
        if forced is not None:
            if self.forced_fails:
                raise psycopg.errors.CheckViolation("still refused")
            self.failed_alone.append((part[0], forced.row_storable))
            return
        if any(n < 0 for n in part):
            raise psycopg.errors.NumericValueOutOfRange("numeric field overflow")
        self.committed.extend(part)

    def skip(self, message: int, reason: str) -> None:
        self.skipped.append(message)


def isolate(book: Book, batch: list[int]) -> int:
    failure = psycopg.errors.NumericValueOutOfRange("numeric field overflow")
    return isolation.write_isolating(batch, book.attempt, book.skip, failure)


def test_the_bad_records_fail_alone_and_the_rest_commits_in_order() -> None:
    book = Book()
    batch = [1, 2, -3, 4, 5, 6, -7, 8]
    assert isolate(book, batch) == 2
    assert book.committed == [1, 2, 4, 5, 6, 8]
    assert book.failed_alone == [(-3, True), (-7, True)]
    assert book.attempts <= 2 * len(batch) + 1


def test_a_record_whose_failure_cannot_be_written_is_skipped() -> None:
    book = Book(forced_fails=True)
    assert isolate(book, [1, -2, 3]) == 1
    assert book.committed == [1, 3] and book.skipped == [-2]


def test_when_the_sweep_alone_fails_the_fault_is_not_in_the_records() -> None:
    book = Book(sweep_fails=True)
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        isolate(book, [1, -2])
    assert book.committed == [] and book.failed_alone == []


@pytest.mark.parametrize(
    "error",
    [
        LedgerInvariantError("entries do not balance"),
        psycopg.OperationalError("server closed the connection"),
        KafkaUnavailable("Kafka did not take 1 records"),
    ],
)
def test_what_cannot_come_from_a_record_is_never_isolated(error: Exception) -> None:
    assert not isolation.caused_by_records(error)

    def attempt(part, forced) -> None:
        if part == [2]:
            raise error

    with pytest.raises(type(error)):
        isolation.write_isolating([1, 2], attempt, lambda m, r: None, ValueError("first"))


def test_record_errors_are_recognised() -> None:
    for error in (
        psycopg.errors.CheckViolation("x"),
        psycopg.errors.UntranslatableCharacter("x"),
        ValueError("x"),
        TypeError("Integer exceeds 64-bit range"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    ):
        assert isolation.caused_by_records(error), error
    assert not isolation.caused_by_records(psycopg.errors.InsufficientPrivilege("x"))


def test_a_reason_is_bounded_storable_text() -> None:
    reason = isolation.describe(ValueError("bad \x00 value\nsecond line" + "x" * 1000))
    assert reason.startswith("ValueError: bad \ufffd value") and "\n" not in reason
    assert len(reason) <= isolation.REASON_CHARS_MAX


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n, 100, 1_000) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff_s(10_000, 100, 5_000) == 5.0

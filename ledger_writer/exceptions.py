"""Errors of the ledger writer."""

from domain.exceptions import LedgerInvariantError, UnprocessableRecord


class LedgerWriterError(Exception):
    """Root of the writer's own errors. Operator: the message names the record or table."""


class KafkaUnavailable(LedgerWriterError):
    """Kafka did not take the writer's records in time (a broker restart, a network cut).

    Operator: nothing is lost: the batch was not committed, or its events wait in the
    outbox. The writer reconnects by itself with backoff; look at the broker if it keeps
    logging this.
    """


class ReconnectGaveUp(LedgerWriterError):
    """PostgreSQL or Kafka stayed unreachable for every reconnection attempt allowed
    (LEDGER_RECONNECT_ATTEMPTS_MAX). Operator: bring the named service back; the writer
    resumes from its committed offsets when started again."""


__all__ = [
    "KafkaUnavailable",
    "LedgerInvariantError",
    "LedgerWriterError",
    "ReconnectGaveUp",
    "UnprocessableRecord",
]

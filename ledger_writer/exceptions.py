"""Errors of the ledger writer."""

from domain.exceptions import LedgerInvariantError


class LedgerWriterError(Exception):
    """Root of the writer's own errors. Operator: the message names the record or table."""


__all__ = ["LedgerInvariantError", "LedgerWriterError"]

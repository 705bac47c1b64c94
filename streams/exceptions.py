"""Errors of the stream processor. Each says what the operator should do.

A handler that raises one of these sends the record to its topic's dead-letter companion
with the message as ``dlq.reason``; the agent carries on with the next record.
"""

from domain.exceptions import DomainError


class StreamsError(DomainError):
    """Root of the stream processor's errors."""

    code = "STREAMS_ERROR"


class StreamInvariantError(StreamsError):
    """The worker was about to break one of its own rules (for example, write a table with
    no record to place it by). A bug, not bad input: the record goes to the dead-letter
    topic with this message; report it with the worker's log."""

    code = "STREAM_INVARIANT"


class UnknownLabelledTransaction(StreamsError):
    """A fraud label names a transaction the wallet's partition has not scored lately: an id
    it never saw, a label keyed by another wallet than the one the request was keyed by, or
    a transaction older than the last ``streams.labels.SCORED_MAX`` of its wallet.

    Operator: the label is on ``fraud.labels.dlq`` with this reason. Check the labeller's
    transaction ids and keys; a label that came too late cannot be learnt from online (it
    still counts for offline training, ``walletpipe models train``).
    """

    code = "UNKNOWN_LABELLED_TRANSACTION"

"""Errors of the stream processor. Each says what the operator should do.

Two kinds, handled differently by the worker (``streams/engine.py``):

* ``RecordRefused``: one record cannot be applied (a label or a ledger outcome for a
  transaction the partition has no decision of, a record keyed by another wallet than its
  own). It goes to ``wallet.commands.dlq`` with the
  message as ``dlq.reason``, nothing else changes, and the worker carries on. So does a
  record that cannot be decoded (``domain.exceptions.RecordDecodeError``).
* everything else, above all ``WalletInvariantError``: the money path contradicts itself.
  The worker stops with the reason (its Kafka transaction is aborted, so nothing of the
  batch is committed); it is never dead-lettered.
"""

from domain.exceptions import DomainError

#: The worker's exit statuses: a broken money invariant (``WalletInvariantError``), and
#: any other failure whose clean-up overran ``STREAMS_FAILURE_EXIT_TIMEOUT_MS``.
EXIT_INVARIANT = 3
EXIT_FAILED = 1


class StreamsError(DomainError):
    """Root of the stream processor's errors."""

    code = "STREAMS_ERROR"


class RecordRefused(StreamsError):
    """A record the stream cannot apply. Operator: it is on ``wallet.commands.dlq`` with this
    reason; fix what produced it, then ``walletpipe dlq replay wallet.commands`` if it
    should still be applied."""

    code = "RECORD_REFUSED"


class UnknownLabelledTransaction(RecordRefused):
    """A fraud label names a transaction the wallet's partition does not hold: an id it never
    saw, a label keyed by another wallet than the one the request was keyed by, or a
    transaction forgotten after ``STREAMS_DECIDED_RETENTION_S``.

    Operator: the label is on ``wallet.commands.dlq`` with this reason. Check the labeller's
    transaction ids and keys; a label that came too late cannot be learnt from online (it
    still counts for offline training, ``walletpipe models train``).
    """

    code = "UNKNOWN_LABELLED_TRANSACTION"


class WalletInvariantError(StreamsError):
    """A wallet's stream state and a record about it contradict each other: a settle or
    release that does not fit the balance, a posting for a transaction the stream declined,
    held for review or released at its deadline, a balance below zero.

    The worker stops with this message, naming the wallet, the transaction and the record's
    partition and offset; nothing of its current Kafka transaction is committed, and it stops
    again at the same record when restarted. Operator: compare the wallet with the ledger
    (``walletpipe ledger verify``, the transaction's events) and find which side is wrong
    before anything else moves; never skip the record.
    """

    code = "WALLET_INVARIANT"


class StreamInvariantError(StreamsError):
    """The worker was about to break one of its own rules (a bug, not bad input). It stops;
    report it with the worker's log."""

    code = "STREAM_INVARIANT"


class KafkaUnavailable(StreamsError):
    """Kafka gave no leader for the worker's input partitions within
    ``STREAMS_KAFKA_WAIT_S`` of its start. The supervisor starts the worker again; operator:
    check that Kafka is up (``walletpipe status``) and its log."""

    code = "KAFKA_UNAVAILABLE"

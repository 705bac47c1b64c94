"""Errors of the core. Each docstring says what the operator (or API caller) should do."""


class DomainError(Exception):
    """Root of every error the core raises. Carries a stable machine-readable ``code``."""

    code = "DOMAIN_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidAmount(DomainError):
    """The amount is not a positive decimal string with at most the currency's decimals.

    Caller: send the amount as a string such as "12.50", within the currency's precision.
    """

    code = "INVALID_AMOUNT"


class UnsupportedCurrency(DomainError):
    """The currency code is not one the wallet supports. Caller: use an ISO 4217 code we list."""

    code = "UNSUPPORTED_CURRENCY"


class InvalidTransaction(DomainError):
    """The transaction's wallets do not fit its type (e.g. a transfer to the same wallet).

    Caller: fix the request; nothing was recorded.
    """

    code = "INVALID_TRANSACTION"


class RecordDecodeError(DomainError):
    """A Kafka record could not be decoded into its schema.

    Operator: the record is on the topic's dead-letter companion with this message; fix the
    producer, then replay the dead-letter record if it should still be processed.
    """

    code = "UNDECODABLE_RECORD"


class LedgerInvariantError(DomainError):
    """A money invariant (debits = credits, balance >= 0, ...) would break.

    Operator: this is a bug or corruption, never a user error. Nothing was written; run
    `walletpipe ledger verify` and inspect the named transaction.
    """

    code = "LEDGER_INVARIANT"


class AccessError(DomainError):
    """A request about API keys that cannot be honoured: an unknown role, roles the
    caller does not hold itself. Caller: ask for roles from the list in the message."""

    code = "INVALID_ROLES"


class InvalidText(DomainError):
    """A text field holds a character that is not text: NUL or another control character,
    a lone surrogate, a bidirectional override. Caller: send printable text only (a
    multi-line note may hold line breaks and tabs); nothing was recorded."""

    code = "INVALID_TEXT"


class InvalidMetadata(DomainError):
    """``metadata`` breaks a bound: a key not of letters, digits and ``_.:-`` (at most 64),
    a string longer than 256 characters, an integer outside 64 bits, a reserved key.
    Caller: fix the named entry; nothing was recorded."""

    code = "INVALID_METADATA"


class UnprocessableRecord(DomainError):
    """A well-formed record holds a value the ledger cannot store (a NUL character, an
    integer beyond 64 bits, a number beyond its column, a row the schema's checks refuse).

    Operator: only this record's transaction failed (status FAILED, code
    UNPROCESSABLE_RECORD); the record is on its topic's dead-letter companion with this
    message. Fix its producer; replay the record only once it is fixed.
    """

    code = "UNPROCESSABLE_RECORD"

    def __init__(self, message: str, *, row_storable: bool = True) -> None:
        super().__init__(message)
        #: Whether the transaction can still be recorded as FAILED (from a cleaned copy of
        #: its text); False when its amounts or wallets break the table's own checks.
        self.row_storable = row_storable

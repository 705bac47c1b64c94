"""Errors of the stream worker. One root, ``StreamsError``."""


class StreamsError(Exception):
    """Root of the stream worker's own errors."""


class StreamInvariantError(StreamsError):
    """The worker was about to break one of its own rules (for example, write a table with
    no record to place it by). A bug, not bad input: the record goes to the dead-letter
    topic with this message; report it with the worker's log."""

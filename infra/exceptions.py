"""Errors of the local stack; each docstring says what the operator should do."""

from __future__ import annotations


class InfraError(Exception):
    """Root of every infra error. Read the message: it names the component and its log."""


class CommandFailedError(InfraError):
    """A tool (initdb, pg_ctl, mvn, java, apt-get) failed or timed out.

    The message carries the command and the tail of its output; fix the cause shown there
    (missing package, no network to Maven Central, disk full) and run `walletpipe up` again.
    """


class StartupTimeoutError(InfraError):
    """A component did not become ready within its timeout.

    Look at the log file named in the message. On a slow machine raise the timeout, e.g.
    WALLETPIPE_KAFKA_START_TIMEOUT_S=180.
    """


class StackNotUpError(InfraError, FileNotFoundError):
    """The stack has never been brought up in this directory: run `walletpipe up` first."""


class MigrationError(InfraError):
    """A migration file is malformed or failed to apply.

    The failing migration was rolled back as a whole; fix its SQL and apply again. Versions
    already recorded in schema_migrations are never re-run.
    """


class LockTimeoutError(InfraError):
    """Another `up`/`down` holds the stack lock; wait for it or remove a stale stack.lock."""


class ShardCountChangedError(InfraError):
    """`up` was asked for another ledger shard count than the stack was made with.

    Users are placed on shards by that count; moving them (resharding) is not supported.
    Unset WALLETPIPE_LEDGER_SHARDS, or `walletpipe down` and remove the stack's directory
    to start over with the new count.
    """

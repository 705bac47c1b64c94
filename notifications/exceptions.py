"""Errors of the notification service. Each docstring says what the operator should do."""

from __future__ import annotations


class NotificationError(Exception):
    """Root of the notification service's errors."""


class KafkaClientBroken(NotificationError):
    """The consumer reported a fatal error: the service makes a new one that resumes from
    the committed offsets. Operator: nothing, unless it repeats (check the broker)."""

"""The notification service: webhooks for API clients (docs/webhooks.md)."""

"""The ``walletpipe`` command: the one place that composes the services into a system."""

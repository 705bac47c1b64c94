"""The pure core shared by every service: money, transaction rules, record schemas, topics.

Nothing here does I/O or imports a driver, so every rule can be tested in microseconds and
every service (API, stream processor, ledger writer, analytics) agrees on one definition.
"""

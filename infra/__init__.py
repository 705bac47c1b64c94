"""The local stack without Docker: PostgreSQL, Kafka (KRaft) and the chDB directory.

`infra.stack` is the entry point (`up`, `down`, `status`, `read_env`); `infra.migrate`
applies the SQL migrations. Nothing here opens a connection or starts a process at import
time: every effect happens inside a function call made by the CLI or a test fixture.
"""

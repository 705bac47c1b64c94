"""The single writer of the ledger: batches of commands, one PostgreSQL transaction each."""

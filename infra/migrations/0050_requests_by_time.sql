-- 0050: accepted requests by the time they were accepted, for `walletpipe ledger reconcile
-- --since` (and the chaos bench), which reads a window of them without scanning them all.
CREATE INDEX IF NOT EXISTS idx_transaction_requests_created_at
    ON transaction_requests(created_at);

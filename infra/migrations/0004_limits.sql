-- 0004: spending limits managed through the API (/v1/limits).
--  * one limit per scope (user or wallet), transaction type and period;
--  * a sequence that versions each published limit set: the stream keeps the newest set of a
--    wallet whatever order two API replicas published in;
--  * the counters live in the stream (faust table `limit-usage`, per wallet and period):
--    current_amount / current_count stay 0 here, reset_at is the end of the period the limit
--    was last written in.

ALTER TABLE transaction_limits ADD CONSTRAINT transaction_limits_type_known
    CHECK (transaction_type IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER', 'PAYMENT'));

CREATE UNIQUE INDEX transaction_limits_one_per_user
    ON transaction_limits (user_id, transaction_type, period_type) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX transaction_limits_one_per_wallet
    ON transaction_limits (wallet_id, transaction_type, period_type) WHERE wallet_id IS NOT NULL;

CREATE SEQUENCE transaction_limits_publish_version;

-- 0060: the customers' side of the wallet (users, devices, KYC, wallet status).
--
-- Every wallet status change is audited (who, when, why). Records the API must get to the
-- stream (wallet status, KYC status, device sets) are written to customer_outbox in the
-- same transaction as the change they announce, then published; a row not yet published
-- is published again by the next change of the same subject or by a retried request, so a
-- change is never recorded without its record reaching Kafka eventually, nor the reverse.
CREATE TABLE IF NOT EXISTS wallet_status_changes (
    change_id UUID PRIMARY KEY,
    wallet_id UUID NOT NULL REFERENCES wallets(wallet_id),
    from_status VARCHAR(20) NOT NULL,
    to_status VARCHAR(20) NOT NULL,
    changed_by VARCHAR(100) NOT NULL,  -- the API client and key that asked
    reason TEXT NOT NULL,
    changed_at TIMESTAMP WITH TIME ZONE NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_wallet_status_changes_wallet
    ON wallet_status_changes(wallet_id, changed_at);

CREATE TABLE IF NOT EXISTS customer_outbox (
    event_id UUID PRIMARY KEY,
    subject_id UUID NOT NULL,  -- the user or wallet the record is about
    topic VARCHAR(100) NOT NULL,
    record_key TEXT NOT NULL,
    record JSONB NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    published_at TIMESTAMP WITH TIME ZONE
);
CREATE INDEX IF NOT EXISTS idx_customer_outbox_unpublished
    ON customer_outbox(subject_id, created_at) WHERE published_at IS NULL;

-- Devices: revoked ones stay (a revoked device named by a request is a fraud signal).
ALTER TABLE user_devices ADD COLUMN IF NOT EXISTS revoked_at TIMESTAMP WITH TIME ZONE;

-- KYC documents: the file's facts (its bytes live in the document store, never here) and
-- the compliance decision.
ALTER TABLE kyc_documents ADD COLUMN IF NOT EXISTS content_type VARCHAR(50);
ALTER TABLE kyc_documents ADD COLUMN IF NOT EXISTS size_bytes INT;
ALTER TABLE kyc_documents ADD COLUMN IF NOT EXISTS sha256 VARCHAR(64);
ALTER TABLE kyc_documents ADD COLUMN IF NOT EXISTS reviewed_by VARCHAR(100);
ALTER TABLE kyc_documents ADD COLUMN IF NOT EXISTS reviewed_at TIMESTAMP WITH TIME ZONE;
CREATE INDEX IF NOT EXISTS idx_kyc_documents_pending
    ON kyc_documents(created_at) WHERE verification_status = 'PENDING';

-- Statements: a wallet's transactions newest first, by either side.
CREATE INDEX IF NOT EXISTS idx_transactions_source_created
    ON transactions(source_wallet_id, created_at DESC, transaction_id DESC);
CREATE INDEX IF NOT EXISTS idx_transactions_destination_created
    ON transactions(destination_wallet_id, created_at DESC, transaction_id DESC);

-- 0061: payment methods' verification. A bank account is usable once its micro-deposits
-- are confirmed (at most a few wrong tries); account numbers are stored encrypted
-- (bank_accounts.account_number holds the ciphertext) with their last four in clear.
ALTER TABLE bank_accounts ADD COLUMN IF NOT EXISTS last_four VARCHAR(4);
ALTER TABLE bank_accounts ADD COLUMN IF NOT EXISTS verification_attempts INT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS idx_payment_cards_number_hash ON payment_cards(card_number_hash);

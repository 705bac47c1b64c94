-- 0003: two-phase PAYMENT and WITHDRAWAL (the seed's asynchronous payment processor).
-- The ledger first holds the payer's total (wallet_balances available -> reserved, the
-- transaction PENDING), asks the payment gateway, and applies its answer (or the expiry)
-- in a later batch. Each hold is one row here: what is held, until when, and how it ended.
-- Every open hold's amount is part of its wallet's reserved_balance, and `ledger verify`
-- checks that reserved_balance equals the sum of the wallet's open holds.

CREATE TABLE ledger_holds (
    transaction_id UUID PRIMARY KEY REFERENCES transactions(transaction_id),
    wallet_id UUID NOT NULL REFERENCES wallets(wallet_id),
    amount DECIMAL(19, 4) NOT NULL CHECK (amount > 0),
    currency_code VARCHAR(3) NOT NULL,
    -- The approved command as the ledger received it (JSON), to build the final events.
    command BYTEA NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    closed_at TIMESTAMP WITH TIME ZONE,
    outcome VARCHAR(20)
        CHECK (outcome IN ('CAPTURED', 'DECLINED', 'VOIDED', 'EXPIRED', 'REFUSED')),
    captured_amount DECIMAL(19, 4) CHECK (captured_amount > 0 AND captured_amount <= amount),
    CHECK ((closed_at IS NULL) = (outcome IS NULL)),
    CHECK ((outcome = 'CAPTURED') = (captured_amount IS NOT NULL))
);
CREATE INDEX idx_ledger_holds_open_expiry ON ledger_holds(expires_at) WHERE closed_at IS NULL;
CREATE INDEX idx_ledger_holds_wallet_open ON ledger_holds(wallet_id) WHERE closed_at IS NULL;

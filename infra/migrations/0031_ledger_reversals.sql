-- 0031 (ledger; 0003 holds the two-phase holds and the runner allows one file per number):
-- reversals. A reversal is a transaction of its own, typed as the mirror of its original
-- (see domain/reversals.py); each row here is one (partial) reversal, so the ledger can
-- refuse to reverse more than the original moved, and `ledger verify` can check it.

CREATE TABLE ledger_reversals (
    reversal_id UUID PRIMARY KEY REFERENCES transactions(transaction_id),
    original_id UUID NOT NULL REFERENCES transactions(transaction_id),
    amount DECIMAL(19, 4) NOT NULL CHECK (amount > 0),
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CHECK (reversal_id <> original_id)
);
CREATE INDEX idx_ledger_reversals_original_id ON ledger_reversals(original_id);

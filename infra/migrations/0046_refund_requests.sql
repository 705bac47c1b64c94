-- A payer asks for its money back; the payee's client grants (which makes the reversal,
-- paid from the payee's wallet) or refuses. Only the client in charge of the wallet that
-- pays back moves its money (ingest_api/refunds.py).
CREATE TABLE refund_requests (
    refund_request_id UUID PRIMARY KEY,
    original_transaction_id UUID NOT NULL,
    requested_by UUID NOT NULL REFERENCES api_clients(client_id),
    -- The wallet that would pay back (the original's payee) and its user: whose client
    -- (owner, or a client it granted) sees and decides the request.
    payee_wallet_id UUID NOT NULL REFERENCES wallets(wallet_id),
    payee_user_id UUID NOT NULL REFERENCES users(user_id),
    payer_wallet_id UUID REFERENCES wallets(wallet_id),
    amount DECIMAL(19, 4) NOT NULL CHECK (amount > 0),
    currency_code VARCHAR(3) NOT NULL,
    reason TEXT CHECK (length(reason) <= 1000),
    status TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'GRANTED', 'REFUSED', 'CANCELLED')),
    idempotency_key VARCHAR(255) NOT NULL,
    request_hash CHAR(64) NOT NULL,
    decided_by UUID REFERENCES api_clients(client_id),
    decision_note TEXT CHECK (length(decision_note) <= 1000),
    decided_at TIMESTAMP WITH TIME ZONE,
    -- The reversal a grant made (a transaction submitted by the payee's client).
    reversal_transaction_id UUID,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    UNIQUE (requested_by, idempotency_key),
    CHECK ((status = 'GRANTED') = (reversal_transaction_id IS NOT NULL)),
    CHECK ((status = 'PENDING') = (decided_at IS NULL))
);
-- A client's incoming requests: by the users it owns, or by the wallets granted to it.
CREATE INDEX idx_refund_requests_payee_user ON refund_requests(payee_user_id, created_at);
CREATE INDEX idx_refund_requests_payee_wallet ON refund_requests(payee_wallet_id, created_at);
CREATE INDEX idx_refund_requests_original ON refund_requests(original_transaction_id);

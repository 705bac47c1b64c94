-- 0002: what the pipeline adds to the seed schema.
--  * tighter checks the seed implies (positive amounts, known states, total = amount + fee,
--    one balance row per wallet) as the database's second line of defence;
--  * API clients and what they may act on;
--  * accepted requests (idempotency, and the PENDING answer before the ledger posts);
--  * the ledger writer's consumed offsets and outbox, committed with each batch;
--  * signed balances of the system accounts (clearing, fee revenue), which go negative by
--    design and so cannot live under wallet_balances' positive_balances check.

ALTER TABLE wallets ADD CONSTRAINT wallets_type_known
    CHECK (wallet_type IN ('PRIMARY', 'SAVINGS', 'BUSINESS', 'SYSTEM'));
ALTER TABLE wallets ADD CONSTRAINT wallets_status_known
    CHECK (status IN ('ACTIVE', 'SUSPENDED', 'CLOSED'));
ALTER TABLE users ADD CONSTRAINT users_status_known
    CHECK (status IN ('ACTIVE', 'SUSPENDED', 'LOCKED', 'PENDING_VERIFICATION'));
ALTER TABLE users ADD CONSTRAINT users_kyc_status_known
    CHECK (kyc_status IN ('PENDING', 'VERIFIED', 'REJECTED'));

ALTER TABLE wallet_balances ADD CONSTRAINT wallet_balances_one_per_wallet UNIQUE (wallet_id);

ALTER TABLE transactions ADD CONSTRAINT transactions_type_known
    CHECK (transaction_type IN ('DEPOSIT', 'WITHDRAWAL', 'TRANSFER', 'PAYMENT'));
ALTER TABLE transactions ADD CONSTRAINT transactions_status_known
    CHECK (transaction_status IN ('PENDING', 'COMPLETED', 'FAILED', 'REVERSED'));
ALTER TABLE transactions ADD CONSTRAINT transactions_amounts_valid
    CHECK (amount > 0 AND fee_amount >= 0 AND total_amount = amount + fee_amount);
ALTER TABLE transactions ADD CONSTRAINT transactions_not_to_self
    CHECK (source_wallet_id IS DISTINCT FROM destination_wallet_id);

ALTER TABLE transaction_events ADD CONSTRAINT transaction_events_type_known
    CHECK (event_type IN ('INITIATED', 'AUTHORIZED', 'SETTLED', 'FAILED', 'REVERSED'));
ALTER TABLE transaction_events ADD CONSTRAINT transaction_events_status_known
    CHECK (event_status IN ('SUCCESS', 'FAILURE', 'PENDING'));

ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_type_known
    CHECK (entry_type IN ('DEBIT', 'CREDIT'));
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_amount_positive CHECK (amount > 0);

ALTER TABLE transaction_limits ADD CONSTRAINT transaction_limits_period_known
    CHECK (period_type IN ('DAILY', 'WEEKLY', 'MONTHLY', 'YEARLY'));
ALTER TABLE transaction_limits ADD CONSTRAINT transaction_limits_positive
    CHECK (max_amount >= 0 AND max_count >= 0 AND current_amount >= 0 AND current_count >= 0);

CREATE TABLE system_balances (
    wallet_id UUID PRIMARY KEY REFERENCES wallets(wallet_id),
    account VARCHAR(40) NOT NULL,
    currency_code VARCHAR(3) NOT NULL,
    balance DECIMAL(19, 4) NOT NULL DEFAULT 0,
    last_updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    UNIQUE (account, currency_code)
);

CREATE TABLE api_clients (
    client_id UUID PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    api_key_hash CHAR(64) UNIQUE NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('client', 'analyst', 'regulator', 'admin')),
    rate_limit_per_second INT NOT NULL DEFAULT 100 CHECK (rate_limit_per_second > 0),
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);

-- A client owns the users it created (and so their wallets); grants add single wallets.
CREATE TABLE api_client_users (
    client_id UUID NOT NULL REFERENCES api_clients(client_id),
    user_id UUID NOT NULL REFERENCES users(user_id),
    PRIMARY KEY (client_id, user_id)
);
CREATE INDEX idx_api_client_users_user_id ON api_client_users(user_id);

CREATE TABLE api_client_wallet_grants (
    client_id UUID NOT NULL REFERENCES api_clients(client_id),
    wallet_id UUID NOT NULL REFERENCES wallets(wallet_id),
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, wallet_id)
);

-- Every request the API accepted: the idempotency record, and the PENDING answer for
-- GET /v1/transactions/{id} until the ledger has written the transaction.
CREATE TABLE transaction_requests (
    transaction_id UUID PRIMARY KEY,
    client_id UUID NOT NULL REFERENCES api_clients(client_id),
    idempotency_key VARCHAR(255) NOT NULL,
    request_hash CHAR(64) NOT NULL,
    record JSONB NOT NULL,
    published_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    UNIQUE (client_id, idempotency_key)
);
CREATE INDEX idx_transaction_requests_unpublished
    ON transaction_requests(created_at) WHERE published_at IS NULL;

-- The ledger writer stores the next offset to consume in the same transaction as the
-- postings it made from the records before it: a crash replays nothing twice.
CREATE TABLE consumer_offsets (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INT NOT NULL,
    next_offset BIGINT NOT NULL CHECK (next_offset >= 0),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Events to publish, written in the same transaction as the postings they announce.
CREATE TABLE outbox (
    outbox_id BIGSERIAL PRIMARY KEY,
    topic TEXT NOT NULL,
    message_key TEXT NOT NULL,
    payload BYTEA NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    published_at TIMESTAMP WITH TIME ZONE
);
CREATE INDEX idx_outbox_unpublished ON outbox(outbox_id) WHERE published_at IS NULL;

-- 0001: the seed schema, as the original system description gives it (tables, checks,
-- indexes). Later migrations add what the pipeline needs; this file stays as the seed wrote it.

CREATE TABLE users (
    user_id UUID PRIMARY KEY,
    email VARCHAR(255) UNIQUE NOT NULL,
    phone_number VARCHAR(20) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    salt VARCHAR(64) NOT NULL,
    first_name VARCHAR(100) NOT NULL,
    last_name VARCHAR(100) NOT NULL,
    date_of_birth DATE NOT NULL,
    status VARCHAR(20) NOT NULL, -- ACTIVE, SUSPENDED, LOCKED, PENDING_VERIFICATION
    kyc_status VARCHAR(20) NOT NULL, -- PENDING, VERIFIED, REJECTED
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    last_login_at TIMESTAMP WITH TIME ZONE,
    failed_login_attempts INT DEFAULT 0,
    version INT NOT NULL DEFAULT 1
);

CREATE TABLE user_addresses (
    address_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    address_type VARCHAR(20) NOT NULL, -- RESIDENTIAL, BUSINESS, MAILING
    address_line1 VARCHAR(255) NOT NULL,
    address_line2 VARCHAR(255),
    city VARCHAR(100) NOT NULL,
    state VARCHAR(100) NOT NULL,
    postal_code VARCHAR(20) NOT NULL,
    country VARCHAR(2) NOT NULL,
    is_verified BOOLEAN NOT NULL DEFAULT FALSE,
    is_primary BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    version INT NOT NULL DEFAULT 1
);

CREATE TABLE user_devices (
    device_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    device_type VARCHAR(50) NOT NULL, -- ANDROID, IOS, WEB
    device_token VARCHAR(255),
    device_name VARCHAR(100),
    is_trusted BOOLEAN NOT NULL DEFAULT FALSE,
    last_used_at TIMESTAMP WITH TIME ZONE NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE TABLE kyc_documents (
    document_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    document_type VARCHAR(50) NOT NULL, -- PASSPORT, DRIVERS_LICENSE, ID_CARD
    document_number VARCHAR(100) NOT NULL,
    issuing_country VARCHAR(2) NOT NULL,
    issue_date DATE NOT NULL,
    expiry_date DATE NOT NULL,
    verification_status VARCHAR(20) NOT NULL, -- PENDING, VERIFIED, REJECTED
    verification_notes TEXT,
    document_file_reference VARCHAR(255), -- Reference to document store
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL
);

-- Indexes
CREATE INDEX idx_users_email ON users(email);
CREATE INDEX idx_users_phone ON users(phone_number);
CREATE INDEX idx_user_addresses_user_id ON user_addresses(user_id);
CREATE INDEX idx_user_devices_user_id ON user_devices(user_id);
CREATE INDEX idx_kyc_documents_user_id ON kyc_documents(user_id);


CREATE TABLE wallets (
    wallet_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    wallet_type VARCHAR(20) NOT NULL, -- PRIMARY, SAVINGS, BUSINESS
    currency_code VARCHAR(3) NOT NULL,
    status VARCHAR(20) NOT NULL, -- ACTIVE, SUSPENDED, CLOSED
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    version INT NOT NULL DEFAULT 1
);

CREATE TABLE wallet_balances (
    balance_id UUID PRIMARY KEY,
    wallet_id UUID NOT NULL REFERENCES wallets(wallet_id),
    available_balance DECIMAL(19, 4) NOT NULL DEFAULT 0,
    pending_balance DECIMAL(19, 4) NOT NULL DEFAULT 0,
    reserved_balance DECIMAL(19, 4) NOT NULL DEFAULT 0,
    last_updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    version INT NOT NULL DEFAULT 1,
    CONSTRAINT positive_balances CHECK (
        available_balance >= 0 AND
        pending_balance >= 0 AND
        reserved_balance >= 0
    )
);

CREATE TABLE payment_methods (
    payment_method_id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(user_id),
    method_type VARCHAR(20) NOT NULL, -- BANK_ACCOUNT, CREDIT_CARD, DEBIT_CARD
    status VARCHAR(20) NOT NULL, -- ACTIVE, INACTIVE, EXPIRED, REMOVED
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    version INT NOT NULL DEFAULT 1
);

CREATE TABLE bank_accounts (
    bank_account_id UUID PRIMARY KEY,
    payment_method_id UUID NOT NULL REFERENCES payment_methods(payment_method_id),
    account_holder_name VARCHAR(255) NOT NULL,
    bank_name VARCHAR(255) NOT NULL,
    account_number VARCHAR(255) NOT NULL,
    routing_number VARCHAR(255) NOT NULL,
    account_type VARCHAR(20) NOT NULL, -- CHECKING, SAVINGS
    is_verified BOOLEAN NOT NULL DEFAULT FALSE,
    verification_method VARCHAR(50), -- MICRO_DEPOSITS, INSTANT_VERIFICATION
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE TABLE payment_cards (
    card_id UUID PRIMARY KEY,
    payment_method_id UUID NOT NULL REFERENCES payment_methods(payment_method_id),
    card_holder_name VARCHAR(255) NOT NULL,
    card_network VARCHAR(20) NOT NULL, -- VISA, MASTERCARD, AMEX
    card_number_hash VARCHAR(255) NOT NULL,
    last_four VARCHAR(4) NOT NULL,
    expiry_month SMALLINT NOT NULL,
    expiry_year SMALLINT NOT NULL,
    billing_address_id UUID REFERENCES user_addresses(address_id),
    is_verified BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL
);

-- Indexes
CREATE INDEX idx_wallets_user_id ON wallets(user_id);
CREATE INDEX idx_wallet_balances_wallet_id ON wallet_balances(wallet_id);
CREATE INDEX idx_payment_methods_user_id ON payment_methods(user_id);
CREATE INDEX idx_bank_accounts_payment_method_id ON bank_accounts(payment_method_id);
CREATE INDEX idx_payment_cards_payment_method_id ON payment_cards(payment_method_id);


CREATE TABLE transactions (
    transaction_id UUID PRIMARY KEY,
    transaction_type VARCHAR(50) NOT NULL, -- DEPOSIT, WITHDRAWAL, TRANSFER, PAYMENT
    transaction_status VARCHAR(20) NOT NULL, -- PENDING, COMPLETED, FAILED, REVERSED
    source_wallet_id UUID REFERENCES wallets(wallet_id),
    destination_wallet_id UUID REFERENCES wallets(wallet_id),
    external_reference_id VARCHAR(255),
    amount DECIMAL(19, 4) NOT NULL,
    currency_code VARCHAR(3) NOT NULL,
    fee_amount DECIMAL(19, 4) NOT NULL DEFAULT 0,
    total_amount DECIMAL(19, 4) NOT NULL,
    description TEXT,
    metadata JSONB,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    completed_at TIMESTAMP WITH TIME ZONE,
    idempotency_key VARCHAR(255),
    ip_address VARCHAR(45),
    user_agent TEXT,
    risk_score DECIMAL(5, 2),
    version INT NOT NULL DEFAULT 1,
    CONSTRAINT check_wallet_ids CHECK (
        (transaction_type = 'TRANSFER' AND source_wallet_id IS NOT NULL AND destination_wallet_id IS NOT NULL) OR
        (transaction_type = 'DEPOSIT' AND destination_wallet_id IS NOT NULL) OR
        (transaction_type = 'WITHDRAWAL' AND source_wallet_id IS NOT NULL) OR
        (transaction_type = 'PAYMENT' AND source_wallet_id IS NOT NULL)
    )
);

CREATE TABLE transaction_events (
    event_id UUID PRIMARY KEY,
    transaction_id UUID NOT NULL REFERENCES transactions(transaction_id),
    event_type VARCHAR(50) NOT NULL, -- INITIATED, AUTHORIZED, SETTLED, FAILED, REVERSED
    event_status VARCHAR(20) NOT NULL, -- SUCCESS, FAILURE, PENDING
    event_data JSONB,
    error_code VARCHAR(50),
    error_message TEXT,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE TABLE ledger_entries (
    entry_id UUID PRIMARY KEY,
    transaction_id UUID NOT NULL REFERENCES transactions(transaction_id),
    wallet_id UUID NOT NULL REFERENCES wallets(wallet_id),
    entry_type VARCHAR(10) NOT NULL, -- DEBIT, CREDIT
    amount DECIMAL(19, 4) NOT NULL,
    balance_after DECIMAL(19, 4) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    version INT NOT NULL DEFAULT 1
);

CREATE TABLE transaction_limits (
    limit_id UUID PRIMARY KEY,
    user_id UUID REFERENCES users(user_id),
    wallet_id UUID REFERENCES wallets(wallet_id),
    transaction_type VARCHAR(50) NOT NULL,
    period_type VARCHAR(20) NOT NULL, -- DAILY, WEEKLY, MONTHLY, YEARLY
    max_amount DECIMAL(19, 4) NOT NULL,
    max_count INT NOT NULL,
    current_amount DECIMAL(19, 4) NOT NULL DEFAULT 0,
    current_count INT NOT NULL DEFAULT 0,
    reset_at TIMESTAMP WITH TIME ZONE NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    version INT NOT NULL DEFAULT 1,
    CONSTRAINT check_reference CHECK (
        (user_id IS NOT NULL AND wallet_id IS NULL) OR
        (user_id IS NULL AND wallet_id IS NOT NULL)
    )
);

-- Indexes
CREATE INDEX idx_transactions_source_wallet_id ON transactions(source_wallet_id);
CREATE INDEX idx_transactions_destination_wallet_id ON transactions(destination_wallet_id);
CREATE INDEX idx_transactions_created_at ON transactions(created_at);
CREATE INDEX idx_transactions_status ON transactions(transaction_status);
CREATE INDEX idx_transaction_events_transaction_id ON transaction_events(transaction_id);
CREATE INDEX idx_ledger_entries_transaction_id ON ledger_entries(transaction_id);
CREATE INDEX idx_ledger_entries_wallet_id ON ledger_entries(wallet_id);
CREATE INDEX idx_transaction_limits_user_id ON transaction_limits(user_id);
CREATE INDEX idx_transaction_limits_wallet_id ON transaction_limits(wallet_id);

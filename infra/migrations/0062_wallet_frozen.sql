-- 0062: FROZEN is a wallet status (POST /v1/wallets/{id}/status): debits refused at the
-- stream (WALLET_FROZEN), credits still land. The seed's SUSPENDED stays valid.
ALTER TABLE wallets DROP CONSTRAINT IF EXISTS wallets_status_known;
ALTER TABLE wallets ADD CONSTRAINT wallets_status_known
    CHECK (status IN ('ACTIVE', 'FROZEN', 'SUSPENDED', 'CLOSED'));

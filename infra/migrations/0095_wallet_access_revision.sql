-- 0095: one number that changes, in the same transaction, with every change that can alter
-- what a client may do with a wallet: the wallet itself (status), its user (KYC status),
-- which client owns the user, and grants. Each ingest process reads it a few times a
-- second and forgets its cached wallet access when it moved, so the hot path serves
-- wallet ownership from memory and a change is in force within a second. New users and
-- wallets change nothing cached (only rows read earlier are cached), so inserts of those
-- do not bump it.
CREATE TABLE wallet_access_revision (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    revision BIGINT NOT NULL
);
INSERT INTO wallet_access_revision (revision) VALUES (1);

CREATE FUNCTION wallet_access_revision_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE wallet_access_revision SET revision = revision + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER wallets_access_changed AFTER UPDATE OR DELETE OR TRUNCATE ON wallets
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_access_revision_bump();
CREATE TRIGGER users_access_changed AFTER UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_access_revision_bump();
CREATE TRIGGER client_users_access_changed AFTER UPDATE OR DELETE OR TRUNCATE ON api_client_users
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_access_revision_bump();
CREATE TRIGGER grants_access_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_client_wallet_grants
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_access_revision_bump();

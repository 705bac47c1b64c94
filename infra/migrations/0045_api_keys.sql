-- API keys of their own: a client (the tenant that owns users, wallets and grants) holds
-- any number of keys; each key has roles, may expire, may be revoked, may have its own
-- rate limit, and is stored as its sha256 only. Rotation makes a new key and gives the
-- old one an expiry (the grace period); both work until then.

CREATE TABLE api_keys (
    key_id UUID PRIMARY KEY,
    client_id UUID NOT NULL REFERENCES api_clients(client_id),
    key_hash CHAR(64) UNIQUE NOT NULL,
    -- The first characters of the key, to tell keys apart in listings; not a secret.
    key_prefix VARCHAR(16) NOT NULL,
    label TEXT NOT NULL DEFAULT '' CHECK (length(label) <= 100),
    roles TEXT[] NOT NULL CHECK (
        cardinality(roles) >= 1
        AND roles <@ ARRAY['customer_app', 'pos', 'partner', 'analyst', 'compliance',
                           'regulator', 'admin']::TEXT[]),
    rate_limit_per_second INT CHECK (rate_limit_per_second > 0),
    rate_limit_burst INT CHECK (rate_limit_burst > 0),
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    expires_at TIMESTAMP WITH TIME ZONE,
    revoked_at TIMESTAMP WITH TIME ZONE,
    -- The key this one replaced (rotation).
    rotated_from UUID REFERENCES api_keys(key_id)
);
CREATE INDEX idx_api_keys_client_id ON api_keys(client_id);

ALTER TABLE api_clients ADD COLUMN rate_limit_burst INT CHECK (rate_limit_burst > 0);

-- Every key the first schema knew keeps working, with the roles its client's role meant.
INSERT INTO api_keys (key_id, client_id, key_hash, key_prefix, label, roles, created_at)
SELECT gen_random_uuid(), client_id, api_key_hash, '', 'migrated',
       CASE role WHEN 'client' THEN ARRAY['customer_app', 'pos', 'partner']
                 ELSE ARRAY[role] END,
       created_at
  FROM api_clients;

-- The key lives in api_keys alone from now on; code still writing these columns fails
-- loudly instead of making a key nobody checks.
ALTER TABLE api_clients DROP COLUMN api_key_hash;
ALTER TABLE api_clients DROP COLUMN role;

-- One number that changes, in the same transaction, with every change to keys or clients.
-- Each service reads it a few times a second and forgets its cached keys when it moved.
CREATE TABLE api_key_revision (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    revision BIGINT NOT NULL
);
INSERT INTO api_key_revision (revision) VALUES (1);

CREATE FUNCTION api_key_revision_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE api_key_revision SET revision = revision + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION api_key_revision_bump();
CREATE TRIGGER api_clients_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_clients
    FOR EACH STATEMENT EXECUTE FUNCTION api_key_revision_bump();

-- A key as every service checks it: whose, what roles, limits, and why it is refused
-- (NULL: valid), with the revision it was read under. Both APIs read this view.
CREATE VIEW api_key_grants AS
SELECT k.key_hash, k.key_id, k.client_id, c.name AS client_name, k.roles,
       extract(epoch FROM k.expires_at)::float8 AS expires_at_s,
       c.rate_limit_per_second AS client_rate_per_second,
       c.rate_limit_burst AS client_burst,
       k.rate_limit_per_second AS key_rate_per_second,
       k.rate_limit_burst AS key_burst,
       CASE WHEN k.revoked_at IS NOT NULL THEN 'API_KEY_REVOKED'
            WHEN k.expires_at <= now() THEN 'API_KEY_EXPIRED' END AS refusal,
       (SELECT revision FROM api_key_revision) AS revision
  FROM api_keys k JOIN api_clients c USING (client_id);

-- Issue a key: the client named p_client_name (made if new, with p_client_rate_limit),
-- and a key of that client with the given hash. The one way every tool makes a key (the
-- API, `walletpipe keys`, the reporting CLI, the demo client of `walletpipe up`), so the
-- rules live in one place. A key whose hash exists already is left as it is (the demo
-- key is issued again at every `up`; an operator's revocation stands).
CREATE FUNCTION api_key_issue(
    p_client_name TEXT,
    p_key_hash TEXT,
    p_key_prefix TEXT,
    p_roles TEXT[],
    p_label TEXT DEFAULT '',
    p_expires_at TIMESTAMP WITH TIME ZONE DEFAULT NULL,
    p_client_rate_limit INT DEFAULT 100,
    p_key_rate_limit INT DEFAULT NULL,
    p_key_burst INT DEFAULT NULL,
    p_rotated_from UUID DEFAULT NULL
) RETURNS TABLE (key_id UUID, client_id UUID, created BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    v_client UUID;
    v_key UUID;
BEGIN
    IF p_client_name IS NULL OR length(btrim(p_client_name)) = 0 OR length(p_client_name) > 100
    THEN
        RAISE EXCEPTION 'a client name has 1 to 100 characters' USING ERRCODE = '22023';
    END IF;
    INSERT INTO api_clients AS c (client_id, name, rate_limit_per_second, created_at)
    VALUES (gen_random_uuid(), p_client_name, p_client_rate_limit, now())
    ON CONFLICT (name) DO NOTHING;
    SELECT k.key_id, k.client_id INTO v_key, v_client FROM api_keys k
     WHERE k.key_hash = p_key_hash;
    IF v_key IS NOT NULL THEN
        RETURN QUERY SELECT v_key, v_client, FALSE;
        RETURN;
    END IF;
    SELECT c.client_id INTO v_client FROM api_clients c WHERE c.name = p_client_name;
    v_key := gen_random_uuid();
    INSERT INTO api_keys (key_id, client_id, key_hash, key_prefix, label, roles,
                          rate_limit_per_second, rate_limit_burst, expires_at, rotated_from)
    VALUES (v_key, v_client, p_key_hash, p_key_prefix, coalesce(p_label, ''), p_roles,
            p_key_rate_limit, p_key_burst, p_expires_at, p_rotated_from);
    RETURN QUERY SELECT v_key, v_client, TRUE;
END;
$$;

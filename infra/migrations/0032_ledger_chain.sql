-- 0032 (ledger): tamper evidence. A hash chain over ledger_entries (one chain per shard
-- database): chain_seq, prev_hash, entry_hash = sha256(prev_hash || canonical entry), see
-- ledger_writer/chain.py. The writer links each batch's entries in the batch's transaction
-- under an advisory lock on the chain head. Entries written before this migration are
-- linked here, in (created_at, entry_id) order.

ALTER TABLE ledger_entries
    ADD COLUMN chain_seq BIGINT CHECK (chain_seq > 0),
    ADD COLUMN prev_hash BYTEA CHECK (octet_length(prev_hash) = 32),
    ADD COLUMN entry_hash BYTEA CHECK (octet_length(entry_hash) = 32);
CREATE UNIQUE INDEX ledger_entries_chain_seq ON ledger_entries(chain_seq);

DO $$
DECLARE
    r RECORD;
    head BYTEA := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    seq BIGINT := 0;
BEGIN
    FOR r IN SELECT entry_id, transaction_id, wallet_id, entry_type, amount, balance_after,
                    created_at
               FROM ledger_entries ORDER BY created_at, entry_id LOOP
        seq := seq + 1;
        UPDATE ledger_entries
           SET chain_seq = seq, prev_hash = head,
               entry_hash = sha256(head || convert_to(
                   seq::text || '|' || r.entry_id::text || '|' || r.transaction_id::text || '|'
                   || r.wallet_id::text || '|' || r.entry_type || '|' || r.amount::text || '|'
                   || r.balance_after::text || '|'
                   || ((extract(epoch FROM r.created_at) * 1000000)::bigint)::text, 'UTF8'))
         WHERE entry_id = r.entry_id
        RETURNING entry_hash INTO head;
    END LOOP;
END $$;

-- Audit entries of actions that belong to no organisation (the platform's shared integrations)
-- form a chain of their own, `_platform` (no org id can start with `_`); its head lives here.
CREATE TABLE cs_audit_heads (
    chain       TEXT PRIMARY KEY,
    audit_seq   BIGINT NOT NULL DEFAULT 0,
    audit_head  TEXT NOT NULL DEFAULT ''
);
INSERT INTO cs_audit_heads (chain) VALUES ('_platform');

-- Entries relayed from another service's outbox carry its id, so a relay that retries after a
-- crash appends each entry once.
ALTER TABLE cs_audit ADD COLUMN source_id TEXT;
CREATE UNIQUE INDEX cs_audit_source ON cs_audit (source_id) WHERE source_id IS NOT NULL;

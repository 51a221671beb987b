-- Control actions of the orchestrator (integrations and their secrets, replay, purge,
-- provisioning), written in the same transaction as the action and relayed to the config-service's
-- hash-chained audit log; deleted once appended there.
CREATE TABLE or_audit_outbox (
    id            TEXT PRIMARY KEY,
    org_id        TEXT,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    before_state  TEXT,
    after_state   TEXT,
    request_id    TEXT,
    created_at    INTEGER NOT NULL
);

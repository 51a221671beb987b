-- Orchestrator tables (prefix or_).

-- Where webhooks come from. org_id NULL: a platform-wide integration (the shared Slack app or
-- GitHub App), whose events find their org through routing.
CREATE TABLE or_integrations (
    id            TEXT PRIMARY KEY,
    org_id        TEXT,
    source        TEXT NOT NULL,
    name          TEXT NOT NULL,
    default_team  TEXT,
    settings      TEXT NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    deleted_at    INTEGER
);
CREATE INDEX or_integrations_org ON or_integrations (org_id);
CREATE UNIQUE INDEX or_integrations_platform ON or_integrations (source)
    WHERE org_id IS NULL AND deleted_at IS NULL;

-- Signing secrets, encrypted (XChaCha20-Poly1305) under a master key named by key_id. Several may
-- be active at once during rotation; retired ones no longer verify.
CREATE TABLE or_integration_secrets (
    id              TEXT PRIMARY KEY,
    integration_id  TEXT NOT NULL REFERENCES or_integrations (id),
    key_id          TEXT NOT NULL,
    nonce           TEXT NOT NULL,
    ciphertext      TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    retired_at      INTEGER
);
CREATE INDEX or_integration_secrets_active ON or_integration_secrets (integration_id, retired_at);

-- The durable inbox: one row per accepted delivery, unique per (integration, delivery id).
CREATE TABLE or_events (
    id               TEXT PRIMARY KEY,
    integration_id   TEXT NOT NULL,
    delivery_id      TEXT NOT NULL,
    org_id           TEXT,
    source           TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    correlation_key  TEXT NOT NULL,
    identifiers      TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    team_id          TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claimed_by       TEXT,
    claimed_until    INTEGER,
    run_id           TEXT,
    last_error       TEXT,
    received_at      INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (integration_id, delivery_id)
);
CREATE INDEX or_events_due ON or_events (status, next_attempt_at);
CREATE INDEX or_events_org ON or_events (org_id, id);
CREATE INDEX or_events_correlation ON or_events (correlation_key, id);
CREATE INDEX or_events_received ON or_events (received_at);

-- What happened to each event, in order.
CREATE TABLE or_event_timeline (
    id        TEXT PRIMARY KEY,
    event_id  TEXT NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT
);
CREATE INDEX or_event_timeline_event ON or_event_timeline (event_id, id);

-- Outbound subscriptions (ADR 0011): where Switchyard's own events are delivered. team_ids NULL:
-- every team of the org; otherwise a JSON array, and only those teams' events are delivered.
CREATE TABLE or_subscriptions (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL,
    kind          TEXT NOT NULL DEFAULT 'webhook',
    url           TEXT NOT NULL,
    event_types   TEXT NOT NULL,
    team_ids      TEXT,
    description   TEXT,
    enabled       BIGINT NOT NULL DEFAULT 1,
    ordered       BIGINT NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX or_subscriptions_org ON or_subscriptions (org_id);

-- Signing secrets (whsec_), sealed under the master keys like integration secrets. During a
-- rotation the previous one keeps signing until expires_at.
CREATE TABLE or_subscription_secrets (
    id              TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES or_subscriptions (id) ON DELETE CASCADE,
    key_id          TEXT NOT NULL,
    nonce           TEXT NOT NULL,
    ciphertext      TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT
);
CREATE INDEX or_subscription_secrets_of ON or_subscription_secrets (subscription_id);

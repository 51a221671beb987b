-- Switchyard's own events (ADR 0011), written in the transaction of the change they report and
-- deleted once fanned out to the matching subscriptions' deliveries. data is the envelope's data.
CREATE TABLE or_outbox (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    team_id      TEXT,
    event_type   TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    data         TEXT NOT NULL
);

-- The config-service's run events, in the same shape; the orchestrator pulls and acknowledges them
-- (GET/POST /api/v1/internal/outbox).
CREATE TABLE cs_outbox (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    team_id      TEXT,
    event_type   TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    data         TEXT NOT NULL
);

-- One event for one subscription. body holds the exact bytes signed and sent on every attempt;
-- status: pending (due at next_attempt_at), delivering (claimed until claimed_until), succeeded,
-- failed (the schedule ran out). Unique per (subscription, event): a repeated fan-out adds nothing.
CREATE TABLE or_deliveries (
    id               TEXT PRIMARY KEY,
    subscription_id  TEXT NOT NULL REFERENCES or_subscriptions (id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL,
    org_id           TEXT NOT NULL,
    team_id          TEXT,
    event_type       TEXT NOT NULL,
    body             TEXT NOT NULL,
    occurred_at      BIGINT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    claimed_by       TEXT,
    claimed_until    BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX or_deliveries_due ON or_deliveries (status, next_attempt_at);
CREATE INDEX or_deliveries_of ON or_deliveries (subscription_id, status, occurred_at);

-- Every attempt: what the receiver answered (code, the first 1 KB of the body) or why it failed.
CREATE TABLE or_delivery_attempts (
    id               TEXT PRIMARY KEY,
    delivery_id      TEXT NOT NULL REFERENCES or_deliveries (id) ON DELETE CASCADE,
    subscription_id  TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    at               BIGINT NOT NULL,
    status           TEXT NOT NULL,
    response_code    BIGINT,
    latency_ms       BIGINT NOT NULL,
    response_body    TEXT,
    error            TEXT
);
CREATE INDEX or_delivery_attempts_of ON or_delivery_attempts (subscription_id, id);
CREATE INDEX or_delivery_attempts_delivery ON or_delivery_attempts (delivery_id);

-- Since when every attempt to the subscription has failed (NULL after a success); past the
-- platform's limit (5 days) the subscription is disabled.
ALTER TABLE or_subscriptions ADD COLUMN failing_since BIGINT;

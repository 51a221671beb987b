-- Config-service tables (prefix cs_). Timestamps are milliseconds since the epoch (BIGINT), JSON is
-- stored as TEXT: the same representation on PostgreSQL and SQLite.

CREATE TABLE cs_orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- Approval policy: {"protected_paths": [...]}.
    policy      TEXT NOT NULL DEFAULT '{"protected_paths":[]}',
    -- Head of the org's audit hash chain, updated in the same transaction as every entry, so that
    -- deleting the newest entries is detected too.
    audit_seq   BIGINT NOT NULL DEFAULT 0,
    audit_head  TEXT NOT NULL DEFAULT ''
);

-- The tenancy tree. Each org has one root node (kind 'org', id = org id, no parent).
CREATE TABLE cs_nodes (
    org_id      TEXT NOT NULL REFERENCES cs_orgs (id),
    id          TEXT NOT NULL,
    parent_id   TEXT,
    kind        TEXT NOT NULL CHECK (kind IN ('org', 'group', 'team')),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, parent_id) REFERENCES cs_nodes (org_id, id)
);
CREATE INDEX cs_nodes_parent ON cs_nodes (org_id, parent_id);

-- Every version of every node's config layer (history is kept).
CREATE TABLE cs_config_versions (
    org_id       TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    version      BIGINT NOT NULL,
    layer        TEXT NOT NULL,
    author       TEXT NOT NULL,
    approved_by  TEXT,
    message      TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (org_id, node_id, version),
    FOREIGN KEY (org_id, node_id) REFERENCES cs_nodes (org_id, id) ON DELETE CASCADE
);

-- The current layer of each node: what effective-config reads join against.
CREATE TABLE cs_config_heads (
    org_id   TEXT NOT NULL,
    node_id  TEXT NOT NULL,
    version  BIGINT NOT NULL,
    layer    TEXT NOT NULL,
    PRIMARY KEY (org_id, node_id),
    FOREIGN KEY (org_id, node_id) REFERENCES cs_nodes (org_id, id) ON DELETE CASCADE
);

-- Pending (and decided) changes to protected config paths.
CREATE TABLE cs_changes (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES cs_orgs (id),
    node_id       TEXT NOT NULL,
    base_version  BIGINT NOT NULL,
    layer         TEXT NOT NULL,
    touched       TEXT NOT NULL,
    author        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at    BIGINT NOT NULL,
    decided_by    TEXT,
    decided_at    BIGINT,
    reason        TEXT
);
CREATE INDEX cs_changes_org ON cs_changes (org_id, status, id);

-- API tokens: only the SHA-256 of the secret is stored.
CREATE TABLE cs_tokens (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES cs_orgs (id),
    node_id       TEXT,
    kind          TEXT NOT NULL CHECK (kind IN ('org_admin', 'team')),
    label         TEXT NOT NULL,
    prefix        TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX cs_tokens_scope ON cs_tokens (org_id, node_id);

-- Routing identifiers, unique per org; (kind, value) is indexed for the lookup across orgs.
CREATE TABLE cs_routes (
    org_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, kind, value),
    FOREIGN KEY (org_id, node_id) REFERENCES cs_nodes (org_id, id) ON DELETE CASCADE
);
CREATE INDEX cs_routes_lookup ON cs_routes (kind, value);
CREATE INDEX cs_routes_node ON cs_routes (org_id, node_id);

-- Append-only audit log, hash-chained per org.
CREATE TABLE cs_audit (
    org_id        TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    before_state  TEXT,
    after_state   TEXT,
    request_id    TEXT,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX cs_audit_actor ON cs_audit (org_id, actor, seq);
CREATE INDEX cs_audit_action ON cs_audit (org_id, action, seq);
CREATE INDEX cs_audit_target ON cs_audit (org_id, target, seq);

-- The record of every agent run.
CREATE TABLE cs_agent_runs (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL,
    team_id          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    trigger_payload  TEXT NOT NULL,
    idempotency_key  TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    summary          TEXT,
    error            TEXT,
    UNIQUE (org_id, idempotency_key)
);
CREATE INDEX cs_agent_runs_org ON cs_agent_runs (org_id, id);
CREATE INDEX cs_agent_runs_team ON cs_agent_runs (org_id, team_id, id);

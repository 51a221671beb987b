-- Provisioning and deprovisioning runs of teams, and their steps.
CREATE TABLE or_provisioning_runs (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL,
    team_id          TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('provision', 'deprovision')),
    idempotency_key  TEXT,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'rolled_back', 'failed')),
    request          TEXT NOT NULL,
    error            TEXT,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    UNIQUE (org_id, idempotency_key)
);
CREATE INDEX or_provisioning_runs_org ON or_provisioning_runs (org_id, id);
-- At most one run of a team executes at a time, whichever replica runs it.
CREATE UNIQUE INDEX or_provisioning_runs_one_running ON or_provisioning_runs (org_id, team_id) WHERE status = 'running';

CREATE TABLE or_provisioning_steps (
    run_id       TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL,
    detail       TEXT,
    error        TEXT,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    PRIMARY KEY (run_id, seq)
);

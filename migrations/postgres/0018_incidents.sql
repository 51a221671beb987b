-- Incidents (ADR 0012): routed events of one team that a correlation rule groups. status: open or
-- resolved (never reopened by a new signal: that opens a new incident whose previous_id links
-- here). group_key: the values of the team's group_by fields ('' when the first signal had none).
CREATE TABLE or_incidents (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL,
    team_id        TEXT NOT NULL,
    status         TEXT NOT NULL,
    group_key      TEXT NOT NULL,
    title          TEXT,
    service        TEXT,
    severity       TEXT,
    severity_rank  BIGINT NOT NULL DEFAULT 0,
    sources        TEXT NOT NULL,
    members        BIGINT NOT NULL DEFAULT 0,
    first_seen     BIGINT NOT NULL,
    last_seen      BIGINT NOT NULL,
    resolved_at    BIGINT,
    resolved_by    TEXT,
    previous_id    TEXT,
    merged_into    TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX or_incidents_team ON or_incidents (org_id, team_id, status, last_seen);
CREATE INDEX or_incidents_org ON or_incidents (org_id, id);

-- The events of an incident. alert_key/alert_resolved: the sender's alert this signal reports
-- the state of (NULL: a signal that cannot resolve, such as a Slack message). seen_by: the event
-- whose agent run had this signal in its context.
CREATE TABLE or_incident_members (
    incident_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    joined_at       BIGINT NOT NULL,
    source          TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    correlation_key TEXT NOT NULL,
    service         TEXT,
    severity        TEXT,
    alert_key       TEXT,
    alert_resolved  BIGINT,
    seen_by         TEXT,
    PRIMARY KEY (incident_id, event_id)
);
CREATE INDEX or_incident_members_alert ON or_incident_members (alert_key);
CREATE INDEX or_incident_members_correlation ON or_incident_members (correlation_key);
CREATE INDEX or_incident_members_latest ON or_incident_members (incident_id, joined_at);

-- The agent runs of an incident, by the event that starts each: the first, and follow-ups for
-- signals that came after a run ended. status: starting (until the agent-runner reports it),
-- running, succeeded, failed, cancelled (relayed from the config-service's run events).
CREATE TABLE or_incident_runs (
    incident_id  TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    run_id       TEXT,
    started_at   BIGINT NOT NULL,
    status       TEXT NOT NULL,
    summary      TEXT,
    PRIMARY KEY (incident_id, event_id)
);
CREATE INDEX or_incident_runs_event ON or_incident_runs (event_id);

CREATE TABLE or_incident_timeline (
    id           TEXT PRIMARY KEY,
    incident_id  TEXT NOT NULL,
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    detail       TEXT
);
CREATE INDEX or_incident_timeline_of ON or_incident_timeline (incident_id, at);

-- What correlation compares (service, severity, the alert's state) and the incident an event
-- joined.
ALTER TABLE or_events ADD COLUMN facts TEXT;
ALTER TABLE or_events ADD COLUMN incident_id TEXT;

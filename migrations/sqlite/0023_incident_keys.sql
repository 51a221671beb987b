-- The alerts and correlation keys of each incident, one row per (incident, key) however many of
-- its members carry it (ADR 0014): correlation looked them up through the members, and a storm's
-- incident has thousands of members with one key, so each signal read them all (quadratic).
CREATE TABLE or_incident_keys (
    kind        TEXT NOT NULL,
    key_value   TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    PRIMARY KEY (kind, key_value, incident_id)
);
INSERT INTO or_incident_keys (kind, key_value, incident_id)
SELECT DISTINCT 'alert', alert_key, incident_id FROM or_incident_members WHERE alert_key IS NOT NULL AND alert_key <> ''
UNION
SELECT DISTINCT 'correlation', correlation_key, incident_id FROM or_incident_members WHERE correlation_key <> '';

-- The members no run has seen yet, which a starting run, a run asking for new signals between its
-- turns and a run's end look for: a storm's incident has thousands seen, and an index of all
-- members made each of those read past them.
CREATE INDEX or_incident_members_unseen ON or_incident_members (incident_id, joined_at) WHERE seen_by IS NULL;

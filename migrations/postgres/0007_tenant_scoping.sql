-- Org-level routing identifiers (a Slack workspace, a GitHub account) pick the org of events that
-- arrive through the platform's shared apps, so each may belong to one organisation only.
CREATE UNIQUE INDEX cs_routes_org_level ON cs_routes (kind, value)
    WHERE kind IN ('slack_team', 'github_owner');

-- In-order dispatch is per integration: one tenant's `jira:OPS-1` must not wait for another's.
DROP INDEX or_events_correlation;
CREATE INDEX or_events_correlation ON or_events (integration_id, correlation_key, id);

-- When an event was first throttled in its current stretch: an event throttled for longer than the
-- orchestrator's cap is dead-lettered with the reason instead of waiting for ever.
ALTER TABLE or_events ADD COLUMN throttled_since BIGINT;

-- How often the event was replayed: part of the run's idempotency key, so a replay starts a new run
-- while a repeated dispatch of the same generation never does.
ALTER TABLE or_events ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;

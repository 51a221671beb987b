-- The events API and the console filter an org's events by status (dead letters, unrouted),
-- newest first: a range of this index instead of a walk through the org's events.
CREATE INDEX or_events_org_status ON or_events (org_id, status, id);

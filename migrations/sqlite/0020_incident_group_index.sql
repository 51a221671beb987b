-- Correlation finds the open incident of a signal's group within the window, and the resolved
-- one a new incident follows, through this index: (org, team, status, last_seen) alone made it
-- walk every open incident of the team, newest first, until the group matched.
CREATE INDEX or_incidents_group ON or_incidents (org_id, team_id, group_key, status, last_seen);

-- The incident an event joined is its member row (found by event, and moved by a merge): the
-- copy on the event, which a merge had to find by scanning every event, is gone.
CREATE INDEX or_incident_members_event ON or_incident_members (event_id);
ALTER TABLE or_events DROP COLUMN incident_id;

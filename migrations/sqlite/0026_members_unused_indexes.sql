-- Correlation finds incidents by alert and correlation key in or_incident_keys (migration 0023);
-- nothing reads the members by those columns any more, and every signal that joins an incident
-- paid for two index entries nobody used.
DROP INDEX or_incident_members_alert;
DROP INDEX or_incident_members_correlation;

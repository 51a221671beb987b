-- PostgreSQL gains the or_correlate function here (correlation in one call); SQLite runs the same
-- steps from the orchestrator (store/incident_members.rs), in process. Nothing changes here.
SELECT 1;

-- SQLite gains or_events_pending_id here (its claim now walks the pending events in arrival
-- order first, as PostgreSQL's has since 0025); the migration keeps the two lists alike.
SELECT 1;

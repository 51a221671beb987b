-- PostgreSQL's or_events_due leaves dispatched events out (its migration 0030). SQLite uses a
-- partial index only for a query that repeats its condition, which `next_due` (the pending
-- statuses only) does not, so SQLite keeps the whole index; this keeps the two lists alike.
SELECT 1;

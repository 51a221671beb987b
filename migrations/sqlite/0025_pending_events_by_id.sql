-- PostgreSQL's claim walks the pending events in arrival order (an index there). SQLite's claim is
-- one statement over window functions that reads the pending events by key, so it needs no such
-- index, and its single writer is spared maintaining one; the migration keeps the two lists alike.
SELECT 1;

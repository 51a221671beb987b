-- or_events_due serves the dispatcher's wait for the next retry or lapsed lease (`next_due`) and
-- the inbox depth metric (`inbox_depth`), which read only events that are not dispatched. Dispatched
-- events are nearly every row the retention keeps: they no longer get an entry here, and each
-- settle writes one index entry fewer. Building it reads the table once, under the migration's
-- lock; the index it builds holds the backlog and the unrouted and dead-lettered events only.
DROP INDEX or_events_due;
CREATE INDEX or_events_due ON or_events (status, next_attempt_at)
    WHERE status IN ('received', 'dispatching', 'throttled', 'retrying', 'unrouted', 'dead_lettered');

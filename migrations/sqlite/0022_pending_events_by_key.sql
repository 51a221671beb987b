-- The claim reads the earliest pending event of each correlation key from the pending events
-- alone: they are few beside the settled ones kept for the retention period.
CREATE INDEX or_events_pending_key ON or_events (integration_id, correlation_key, id)
    WHERE status IN ('received', 'dispatching', 'throttled', 'retrying');

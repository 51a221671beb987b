-- The claim looks for heads among the earliest due pending events first (store/claim.rs): a walk
-- of the pending events in arrival order, which stops once it has found enough.
CREATE INDEX or_events_pending_id ON or_events (id)
    WHERE status IN ('received', 'dispatching', 'throttled', 'retrying');

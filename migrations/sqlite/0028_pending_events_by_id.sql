-- SQLite's claim now looks for heads among the earliest due pending events first, as
-- PostgreSQL's does (store/claim.rs): a walk of the pending events in arrival order that stops
-- once it has found enough, instead of reading every pending event by key on each claim (which
-- held the single writer for longer the deeper the backlog, and slowed acknowledgements with it).
CREATE INDEX or_events_pending_id ON or_events (id)
    WHERE status IN ('received', 'dispatching', 'throttled', 'retrying');

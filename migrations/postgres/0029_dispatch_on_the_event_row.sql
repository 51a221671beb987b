-- An event whose run started gets its `routed`, `dispatch_attempt` and `dispatched` timeline
-- entries from its row (ADR 0013, second amendment): when the runner accepted the run and what
-- routed it. Three timeline rows (and six index entries) fewer for most events; a replay writes
-- them out as rows before the event goes round again.
ALTER TABLE or_events ADD COLUMN dispatched_at BIGINT;
ALTER TABLE or_events ADD COLUMN routed_by TEXT;

-- The claim reads a key's events through or_events_pending_key (migration 0022), the only reads by
-- correlation key; nothing reads every status by key, and each event paid for this index's entry
-- at its insert, its claim and its settle (2026-12-05: no scan of it in a steady run of 15,000).
DROP INDEX or_events_correlation;

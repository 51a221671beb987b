-- The retention purge reads the primary key: event ids are UUIDv7, whose text order is their time
-- order, so "received before T" is "id below the smallest id of T" (`ids::id_floor_at`). Nothing
-- else read this index, and each event paid for its entry at its insert, its claim and its settle.
DROP INDEX or_events_received;

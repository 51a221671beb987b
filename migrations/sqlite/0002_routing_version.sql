-- A counter bumped whenever any routing identifier changes, so that callers caching lookups
-- (the orchestrator) can invalidate their cache with one cheap read.
CREATE TABLE cs_routing_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO cs_routing_version (id, version) VALUES (1, 0);

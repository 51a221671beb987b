-- Nodes removed (deleted, or deprovisioned) are archived here first, with their whole layer
-- history, so nothing of a team's configuration is lost and its id can be used again.
CREATE TABLE cs_node_archive (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    archived_at  INTEGER NOT NULL,
    archived_by  TEXT NOT NULL,
    node         TEXT NOT NULL,
    versions     TEXT NOT NULL
);
CREATE INDEX cs_node_archive_org ON cs_node_archive (org_id, id);

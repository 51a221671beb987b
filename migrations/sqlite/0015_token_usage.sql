-- Tokens used per org and team per UTC day (team_id '' is the org's total), added to when a run
-- records its usage, so checking a day's budget is two point reads, not a sum over the day's runs.
CREATE TABLE cs_token_usage (
    org_id  TEXT NOT NULL,
    team_id TEXT NOT NULL,
    day     INTEGER NOT NULL,
    tokens  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, team_id, day)
);

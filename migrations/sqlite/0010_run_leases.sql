-- Runs hold a lease: the agent-runner executing one renews it; when it lapses (the runner died), any
-- runner resumes the run (bounded attempts) or fails it, and nothing stays queued or running past
-- its deadline. reply_to is kept so a resumed run still answers where the signal came from.
ALTER TABLE cs_agent_runs ADD COLUMN reply_to TEXT;
ALTER TABLE cs_agent_runs ADD COLUMN lease_owner TEXT;
ALTER TABLE cs_agent_runs ADD COLUMN lease_until INTEGER;
ALTER TABLE cs_agent_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cs_agent_runs ADD COLUMN deadline_at INTEGER;
CREATE INDEX cs_agent_runs_unfinished ON cs_agent_runs (status, lease_until)
    WHERE status IN ('queued', 'running');

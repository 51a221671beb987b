-- What a run did (its steps: model turns and tool calls), the tokens it used, and the effective
-- config it ran with (the config's etag), recorded by the agent-runner.
ALTER TABLE cs_agent_runs ADD COLUMN transcript TEXT;
ALTER TABLE cs_agent_runs ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cs_agent_runs ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cs_agent_runs ADD COLUMN config_etag TEXT;

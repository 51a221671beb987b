-- The webhook request's W3C traceparent, so dispatch continues the same trace to the agent-runner.
ALTER TABLE or_events ADD COLUMN traceparent TEXT;

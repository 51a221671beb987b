-- Which services may read a secret's value (a JSON array; agent-runner by default). The
-- orchestrator reads only secrets an admin shared with it, such as the Slack incoming-webhook
-- URL of a `slack` subscription.
ALTER TABLE cs_secrets ADD COLUMN readers TEXT NOT NULL DEFAULT '["agent-runner"]';

-- A `slack` subscription posts to the incoming-webhook URL held by this org secret (its url
-- column is then empty: the URL is a credential and lives only in the secrets store).
ALTER TABLE or_subscriptions ADD COLUMN url_secret TEXT;

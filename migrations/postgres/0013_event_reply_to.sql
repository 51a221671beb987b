-- Where the agent's answer goes, read by the sender's module when the event comes in (the
-- dispatcher no longer re-reads payloads). Events still owed a dispatch get theirs from their
-- payload, as the dispatcher used to derive it.
ALTER TABLE or_events ADD COLUMN reply_to TEXT;

UPDATE or_events SET reply_to = jsonb_build_object(
        'kind', 'slack',
        'team', COALESCE(payload::jsonb #>> '{team_id}', payload::jsonb #>> '{team,id}'),
        'channel', COALESCE(payload::jsonb #>> '{event,channel}', payload::jsonb #>> '{channel_id}', payload::jsonb #>> '{channel,id}'),
        'thread_ts', COALESCE(payload::jsonb #>> '{event,thread_ts}', payload::jsonb #>> '{event,ts}', payload::jsonb #>> '{message,ts}'))::text
WHERE source = 'slack' AND status IN ('received', 'retrying', 'throttled', 'dispatching')
  AND COALESCE(payload::jsonb #>> '{event,channel}', payload::jsonb #>> '{channel_id}', payload::jsonb #>> '{channel,id}') IS NOT NULL;

UPDATE or_events SET reply_to = jsonb_build_object(
        'kind', 'github',
        'repo', payload::jsonb #>> '{repository,full_name}',
        'issue_number', COALESCE(payload::jsonb #> '{issue,number}', payload::jsonb #> '{pull_request,number}'))::text
WHERE source = 'github' AND status IN ('received', 'retrying', 'throttled', 'dispatching')
  AND payload::jsonb #>> '{repository,full_name}' IS NOT NULL
  AND jsonb_typeof(COALESCE(payload::jsonb #> '{issue,number}', payload::jsonb #> '{pull_request,number}')) = 'number';

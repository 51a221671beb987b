-- Where the agent's answer goes, read by the sender's module when the event comes in (the
-- dispatcher no longer re-reads payloads). Events still owed a dispatch get theirs from their
-- payload, as the dispatcher used to derive it.
ALTER TABLE or_events ADD COLUMN reply_to TEXT;

UPDATE or_events SET reply_to = json_object(
        'kind', 'slack',
        'team', COALESCE(json_extract(payload, '$.team_id'), json_extract(payload, '$.team.id')),
        'channel', COALESCE(json_extract(payload, '$.event.channel'), json_extract(payload, '$.channel_id'), json_extract(payload, '$.channel.id')),
        'thread_ts', COALESCE(json_extract(payload, '$.event.thread_ts'), json_extract(payload, '$.event.ts'), json_extract(payload, '$.message.ts')))
WHERE source = 'slack' AND status IN ('received', 'retrying', 'throttled', 'dispatching') AND json_valid(payload)
  AND COALESCE(json_extract(payload, '$.event.channel'), json_extract(payload, '$.channel_id'), json_extract(payload, '$.channel.id')) IS NOT NULL;

UPDATE or_events SET reply_to = json_object(
        'kind', 'github',
        'repo', json_extract(payload, '$.repository.full_name'),
        'issue_number', COALESCE(json_extract(payload, '$.issue.number'), json_extract(payload, '$.pull_request.number')))
WHERE source = 'github' AND status IN ('received', 'retrying', 'throttled', 'dispatching') AND json_valid(payload)
  AND json_extract(payload, '$.repository.full_name') IS NOT NULL
  AND json_type(COALESCE(json_extract(payload, '$.issue.number'), json_extract(payload, '$.pull_request.number'))) = 'integer';

-- The alerts and correlation keys of each incident, one row per (incident, key) however many of
-- its members carry it (ADR 0014): correlation looked them up through the members, and a storm's
-- incident has thousands of members with one key, so each signal read them all (quadratic).
CREATE TABLE or_incident_keys (
    kind        TEXT NOT NULL,
    key_value   TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    PRIMARY KEY (kind, key_value, incident_id)
);
INSERT INTO or_incident_keys (kind, key_value, incident_id)
SELECT DISTINCT 'alert', alert_key, incident_id FROM or_incident_members WHERE alert_key IS NOT NULL AND alert_key <> ''
UNION
SELECT DISTINCT 'correlation', correlation_key, incident_id FROM or_incident_members WHERE correlation_key <> '';

-- The members no run has seen yet, which a starting run, a run asking for new signals between its
-- turns and a run's end look for: a storm's incident has thousands seen, and an index of all
-- members made each of those read past them.
CREATE INDEX or_incident_members_unseen ON or_incident_members (incident_id, joined_at) WHERE seen_by IS NULL;

-- or_correlate (migration 0021), looking keys up in or_incident_keys and adding to it.
CREATE OR REPLACE FUNCTION or_correlate(
    p_lock BIGINT, p_event TEXT, p_org TEXT, p_team TEXT, p_source TEXT, p_event_type TEXT,
    p_correlation_key TEXT, p_service TEXT, p_severity TEXT, p_rank BIGINT, p_alert_key TEXT,
    p_alert_resolved BIGINT, p_group TEXT, p_cutoff BIGINT, p_now BIGINT, p_new_id TEXT,
    p_title TEXT, p_opened_entry TEXT, p_opened_detail TEXT, p_follows_entry TEXT)
RETURNS TABLE (outcome TEXT, going TEXT, subscribed BOOLEAN, inc or_incidents)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_id TEXT;
    v_previous TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    subscribed := EXISTS (SELECT 1 FROM or_subscriptions s WHERE s.org_id = p_org AND s.enabled = 1);
    SELECT m.incident_id INTO v_id FROM or_incident_members m WHERE m.event_id = p_event LIMIT 1;
    IF v_id IS NOT NULL THEN
        outcome := 'already';
        SELECT * INTO inc FROM or_incidents i WHERE i.id = v_id;
        RETURN NEXT;
        RETURN;
    END IF;
    IF p_alert_key IS NOT NULL AND p_alert_key <> '' THEN
        SELECT i.id INTO v_id FROM or_incident_keys k JOIN or_incidents i ON i.id = k.incident_id
        WHERE k.kind = 'alert' AND k.key_value = p_alert_key AND i.org_id = p_org AND i.team_id = p_team
          AND i.status = 'open'
        ORDER BY i.last_seen DESC LIMIT 1;
    END IF;
    IF v_id IS NULL AND p_correlation_key <> '' THEN
        SELECT i.id INTO v_id FROM or_incident_keys k JOIN or_incidents i ON i.id = k.incident_id
        WHERE k.kind = 'correlation' AND k.key_value = p_correlation_key AND i.org_id = p_org
          AND i.team_id = p_team AND i.status = 'open'
        ORDER BY i.last_seen DESC LIMIT 1;
    END IF;
    IF v_id IS NULL AND p_alert_resolved = 1 THEN
        outcome := 'none';
        RETURN NEXT;
        RETURN;
    END IF;
    IF v_id IS NULL AND p_group IS NOT NULL THEN
        SELECT i.id INTO v_id FROM or_incidents i WHERE i.org_id = p_org AND i.team_id = p_team
          AND i.group_key = p_group AND i.status = 'open' AND i.last_seen >= p_cutoff
        ORDER BY i.last_seen DESC LIMIT 1;
    ELSIF v_id IS NULL THEN
        SELECT i.id INTO v_id FROM or_incidents i WHERE i.org_id = p_org AND i.team_id = p_team
          AND i.status = 'open' AND i.last_seen >= p_cutoff
        ORDER BY i.last_seen DESC LIMIT 1;
    END IF;
    IF v_id IS NULL THEN
        SELECT i.id INTO v_previous FROM or_incidents i WHERE i.org_id = p_org AND i.team_id = p_team
          AND i.group_key = COALESCE(p_group, '') AND i.status = 'resolved' AND i.resolved_at >= p_cutoff
        ORDER BY i.resolved_at DESC LIMIT 1;
        INSERT INTO or_incidents (id, org_id, team_id, status, group_key, title, service, severity,
            severity_rank, sources, members, first_seen, last_seen, previous_id, created_at, updated_at)
        VALUES (p_new_id, p_org, p_team, 'open', COALESCE(p_group, ''), p_title, p_service,
            CASE WHEN p_rank > 0 THEN p_severity END, GREATEST(p_rank, 0), json_build_array(p_source)::text,
            1, p_now, p_now, v_previous, p_now, p_now)
        RETURNING * INTO inc;
        INSERT INTO or_incident_members (incident_id, event_id, joined_at, source, event_type,
            correlation_key, service, severity, alert_key, alert_resolved, seen_by)
        VALUES (p_new_id, p_event, p_now, p_source, p_event_type, p_correlation_key, p_service,
            p_severity, p_alert_key, p_alert_resolved, p_event);
        INSERT INTO or_incident_keys (incident_id, kind, key_value)
        SELECT p_new_id, k.kind, k.key_value FROM (VALUES ('alert', p_alert_key), ('correlation', p_correlation_key)) k (kind, key_value)
        WHERE k.key_value IS NOT NULL AND k.key_value <> ''
        ON CONFLICT DO NOTHING;
        INSERT INTO or_incident_timeline (id, incident_id, at, kind, detail)
        VALUES (p_opened_entry, p_new_id, p_now, 'opened', p_opened_detail);
        IF v_previous IS NOT NULL THEN
            INSERT INTO or_incident_timeline (id, incident_id, at, kind, detail)
            VALUES (p_follows_entry, p_new_id, p_now, 'follows',
                'incident ' || v_previous || ', resolved within the window');
        END IF;
        INSERT INTO or_incident_runs (incident_id, event_id, started_at, status)
        VALUES (p_new_id, p_event, p_now, 'starting');
        outcome := 'opened';
        RETURN NEXT;
        RETURN;
    END IF;
    INSERT INTO or_incident_members (incident_id, event_id, joined_at, source, event_type,
        correlation_key, service, severity, alert_key, alert_resolved, seen_by)
    VALUES (v_id, p_event, p_now, p_source, p_event_type, p_correlation_key, p_service,
        p_severity, p_alert_key, p_alert_resolved, NULL);
    INSERT INTO or_incident_keys (incident_id, kind, key_value)
    SELECT v_id, k.kind, k.key_value FROM (VALUES ('alert', p_alert_key), ('correlation', p_correlation_key)) k (kind, key_value)
    WHERE k.key_value IS NOT NULL AND k.key_value <> ''
    ON CONFLICT DO NOTHING;
    UPDATE or_incidents i SET last_seen = p_now, members = i.members + 1, updated_at = p_now,
        sources = CASE WHEN i.sources::jsonb ? p_source THEN i.sources
                       ELSE (i.sources::jsonb || to_jsonb(p_source))::text END,
        service = COALESCE(i.service, p_service),
        severity = CASE WHEN i.severity_rank < p_rank THEN p_severity ELSE i.severity END,
        severity_rank = GREATEST(i.severity_rank, p_rank)
    WHERE i.id = v_id
    RETURNING * INTO inc;
    SELECT COALESCE(r.run_id, r.event_id) INTO going FROM or_incident_runs r
    WHERE r.incident_id = v_id AND r.status IN ('starting', 'running') LIMIT 1;
    outcome := 'joined';
    RETURN NEXT;
END
$$;

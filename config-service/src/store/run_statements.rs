//! The run writes of [`super::run_writes`] as single statements, on PostgreSQL: a batch of new
//! runs alone, or of moves alone, is one data-modifying statement outside any transaction, its
//! events with it (ADR 0018's second amendment), where a transaction was four or five round
//! trips. Each event is built beforehand, from what the statement writes, and written only for
//! the runs the statement inserted or moved.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_api::runs::UpdateRun;
use switchyard_common::db::{keep_prepared, values_rows};
use switchyard_common::ids::new_id;

use super::AgentRun;
use super::run_writes::{Before, MOVE, bind_move};
use super::runs::{NewRun, RUN_COLS, run_event};
use crate::domain::runs::is_terminal;
use crate::error::Result;

/// `insert_runs` with the new runs' events (`run.started` for those recorded running) in the
/// same statement, outside any transaction (atomic as any statement is): one round trip where
/// `BEGIN`, the insert, the events and `COMMIT` were four. PostgreSQL only. Each event is built
/// beforehand from what the insert writes (a new run's row is all the request's and the time's),
/// and written only for the runs inserted.
pub(super) async fn insert_runs_publishing(
    pool: &sqlx::AnyPool,
    runs: &[&NewRun<'_>],
    ids: &[String],
    now: i64,
) -> Result<Vec<AnyRow>> {
    let sql = format!(
        "WITH v (vid, vorg, vteam, vstatus, vtrigger, vkey, vreply, vowner, vlease, vattempts, vdeadline, vstarted, vetag, \
           vpub, vtype, vdata) AS (VALUES {}), \
         ins AS (INSERT INTO cs_agent_runs (id, org_id, team_id, status, trigger_payload, idempotency_key, created_at, \
           reply_to, lease_owner, lease_until, attempts, deadline_at, started_at, config_etag) \
         SELECT vid, vorg, vteam, vstatus, vtrigger, vkey, $1, vreply, vowner, vlease, vattempts, vdeadline, vstarted, vetag \
         FROM v WHERE EXISTS (SELECT 1 FROM cs_nodes WHERE org_id = v.vorg AND id = v.vteam) \
         ON CONFLICT (org_id, idempotency_key) DO NOTHING RETURNING {RUN_COLS}), \
         published AS (INSERT INTO cs_outbox (id, org_id, team_id, event_type, occurred_at, data) \
           SELECT v.vpub, v.vorg, v.vteam, v.vtype, $1, v.vdata FROM ins JOIN v ON v.vid = ins.id WHERE v.vtype IS NOT NULL) \
         SELECT * FROM ins",
        values_rows(2, runs.len(), 16)
    );
    let mut q = sqlx::query(&sql)
        .persistent(keep_prepared(runs.len()))
        .bind(now);
    for (run, id) in runs.iter().zip(ids) {
        let row = as_inserted(run, id, now);
        let event = run_event(&row);
        q = q
            .bind(id.as_str())
            .bind(run.org)
            .bind(run.team)
            .bind(row.status.clone())
            .bind(run.trigger.to_string())
            .bind(run.idempotency_key)
            .bind(run.reply_to.map(Value::to_string))
            .bind(run.runner)
            .bind(run.runner.map(|_| now + run.lease_ms))
            .bind(row.attempts)
            .bind(run.deadline_ms.map(|d| now + d))
            .bind(run.running.then_some(now))
            .bind(run.config_etag)
            .bind(new_id())
            .bind(event.as_ref().map(|e| e.event_type))
            .bind(event.map(|e| e.data.to_string()));
    }
    Ok(q.fetch_all(pool).await?)
}

/// The row `insert_runs` writes for `run` (what its event is built from before the insert).
fn as_inserted(run: &NewRun<'_>, id: &str, now: i64) -> AgentRun {
    let at = |ms: i64| switchyard_common::time::rfc3339(ms);
    AgentRun {
        id: id.to_owned(),
        org_id: run.org.to_owned(),
        team_id: run.team.to_owned(),
        status: if run.running { "running" } else { "queued" }.to_owned(),
        trigger: run.trigger.clone(),
        idempotency_key: run.idempotency_key.map(str::to_owned),
        created_at: at(now),
        started_at: run.running.then(|| at(now)),
        finished_at: None,
        summary: None,
        error: None,
        reply_to: run.reply_to.cloned(),
        lease_owner: run.runner.map(str::to_owned),
        lease_until: run.runner.map(|_| at(now + run.lease_ms)),
        attempts: if run.runner.is_some() { 1 } else { 0 },
        deadline_at: run.deadline_ms.map(|d| at(now + d)),
        transcript: None,
        usage: Default::default(),
        config_etag: run.config_etag.map(str::to_owned),
    }
}

/// The columns [`seen_row`] reads (PostgreSQL: the trigger's event id alone, as JSON text).
pub(super) const SEEN_COLS: &str = ", org_id, team_id, CAST(CAST(trigger_payload AS json)->'event_id' AS TEXT) AS trigger_event, \
    idempotency_key, created_at, started_at, finished_at, summary, error, attempts, input_tokens, output_tokens, config_etag";

/// What a run's event reads of it, from [`SEEN_COLS`].
pub(super) fn seen_row(r: &AnyRow) -> Result<AgentRun> {
    let event_id = r
        .try_get::<Option<String>, _>("trigger_event")?
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    Ok(AgentRun {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        team_id: r.try_get("team_id")?,
        status: r.try_get("status")?,
        trigger: event_id.map_or_else(
            || serde_json::json!({}),
            |e| serde_json::json!({ "event_id": e }),
        ),
        idempotency_key: r.try_get("idempotency_key")?,
        created_at: super::ts(r, "created_at")?,
        started_at: super::opt_ts(r, "started_at")?,
        finished_at: super::opt_ts(r, "finished_at")?,
        summary: r.try_get("summary")?,
        error: r.try_get("error")?,
        reply_to: None,
        lease_owner: None,
        lease_until: None,
        attempts: r.try_get("attempts")?,
        deadline_at: None,
        transcript: None,
        usage: switchyard_api::runs::RunUsage {
            input_tokens: r.try_get("input_tokens")?,
            output_tokens: r.try_get("output_tokens")?,
        },
        config_etag: r.try_get("config_etag")?,
    })
}

/// `run` as [`MOVE`] leaves it (what its event reads).
fn as_moved(run: &AgentRun, u: &UpdateRun, now: i64) -> AgentRun {
    let at = switchyard_common::time::rfc3339(now);
    let mut run = run.clone();
    run.status = u.status.clone();
    if u.status == "running" {
        run.started_at = Some(at.clone());
    }
    if is_terminal(&u.status) {
        run.finished_at = Some(at);
    }
    run.summary = u.summary.clone().or(run.summary);
    run.error = u.error.clone().or(run.error);
    run.usage = u.usage.unwrap_or(run.usage);
    run.config_etag = u.config_etag.clone().or(run.config_etag);
    run
}

/// `move_runs` with the moved runs' events and the tokens they add to the day's counters in
/// the same statement, outside any transaction (atomic as any statement is): one round trip
/// where `BEGIN`, the update, the events, the counters and `COMMIT` were four or five.
/// PostgreSQL only. Each event is built beforehand from the run as read (`before`) and its move,
/// and the move is a compare-and-set on the status and the attempts: the other columns the
/// event reads change only with them (a resumption changes `started_at` with `attempts`), so a
/// run moved is exactly the run its event describes; one that changed meanwhile is not moved
/// (answered as changed, as `move_runs` answers a run whose status changed).
pub(super) async fn move_runs_publishing(
    pool: &sqlx::AnyPool,
    moves: &[(&str, &str, &UpdateRun)],
    before: &HashMap<String, Before>,
    now: i64,
) -> Result<Vec<AnyRow>> {
    // The day's counters, only when a move adds tokens (a statement is planned whole).
    let adds = moves.iter().any(|(id, _, u)| {
        u.usage
            .is_some_and(|x| x.input_tokens + x.output_tokens != before[*id].tokens)
    });
    let counted = if adds {
        ", counted AS (INSERT INTO cs_token_usage (org_id, team_id, day, tokens) \
           SELECT t.org, t.team, $2, SUM(t.delta) FROM ( \
             SELECT v.vorg AS org, v.vteam AS team, v.vdelta AS delta FROM upd JOIN v ON v.vid = upd.id \
             UNION ALL SELECT v.vorg, '', v.vdelta FROM upd JOIN v ON v.vid = upd.id) t \
           WHERE t.delta <> 0 GROUP BY t.org, t.team ORDER BY t.org, t.team \
           ON CONFLICT (org_id, team_id, day) DO UPDATE SET tokens = cs_token_usage.tokens + excluded.tokens) "
    } else {
        ""
    };
    let sql = format!(
        "WITH v (vid, vfrom, vstatus, vend, vsummary, verror, vtranscript, vin, vout, vetag, vattempts, \
           vpub, vtype, vdata, vorg, vteam, vdelta) AS (VALUES {}), \
         upd AS (UPDATE cs_agent_runs SET {MOVE} FROM v \
           WHERE id = v.vid AND status = v.vfrom AND attempts = v.vattempts RETURNING {RUN_COLS}), \
         published AS (INSERT INTO cs_outbox (id, org_id, team_id, event_type, occurred_at, data) \
           SELECT v.vpub, v.vorg, v.vteam, v.vtype, $1, v.vdata FROM upd JOIN v ON v.vid = upd.id WHERE v.vtype IS NOT NULL) \
         {counted}SELECT * FROM upd",
        values_rows(3, moves.len(), 17)
    );
    let mut q = sqlx::query(&sql)
        .persistent(keep_prepared(moves.len()))
        .bind(now)
        .bind(now - now.rem_euclid(86_400_000));
    for (id, from, u) in moves {
        let b = &before[*id];
        let seen = b.seen.as_ref().expect("read on PostgreSQL");
        let after = as_moved(seen, u, now);
        let event = run_event(&after);
        let delta = after.usage.input_tokens + after.usage.output_tokens - b.tokens;
        q = bind_move(q, id, from, u)
            .bind(seen.attempts)
            .bind(new_id())
            .bind(event.as_ref().map(|e| e.event_type))
            .bind(event.as_ref().map(|e| e.data.to_string()))
            .bind(seen.org_id.clone())
            .bind(seen.team_id.clone())
            .bind(delta);
    }
    Ok(q.fetch_all(pool).await?)
}

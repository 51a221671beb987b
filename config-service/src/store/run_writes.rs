//! Recording runs many at a time (ADR 0019). The agent-runner records the runs it starts and the
//! outcomes of those it finished in batches; a batch is one transaction of a few statements
//! whatever its size: the new runs inserted in one, the moves applied in another (each a
//! compare-and-set on the run's status), their events and the day's token counters in one each.
//! New runs alone (a dispatch round's, recorded before the orchestrator is answered) are one
//! statement on PostgreSQL, their events with them, outside any transaction.
//! The single-run calls are batches of one, so both take the same path.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_api::runs::UpdateRun;
use switchyard_common::db::{Backend, keep_prepared, values_rows};
use switchyard_common::ids::new_id;
use switchyard_common::time::now_ms;

use super::run_statements::{SEEN_COLS, insert_runs_publishing, move_runs_publishing, seen_row};
use super::runs::{NewRun, OUTBOX, RUN_COLS, run_event, run_row};
use super::{AgentRun, Store};
use crate::domain::runs::{is_terminal, transition_allowed};
use crate::error::{Error, Result};

/// Rows per statement: far below both backends' limits on bound values.
const CHUNK: usize = 256;

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// What [`Store::write_runs`] did with each item, in the items' order.
#[derive(Debug, Default)]
pub struct RunWrites {
    /// Each new run, and whether it was created now (`false`: its idempotency key was used).
    pub created: Vec<Result<(AgentRun, bool)>>,
    /// Each moved run as it is now.
    pub updated: Vec<Result<AgentRun>>,
}

/// Where a run stood before a batch moved it.
pub(super) struct Before {
    pub(super) status: String,
    pub(super) tokens: i64,
    /// On PostgreSQL, what the run's event reads of it (the trigger as its event id only; no
    /// transcript, reply or lease): the moves' events are built from it before the move.
    pub(super) seen: Option<AgentRun>,
}

impl Store {
    /// Records a run, `queued` or already `running`. With an idempotency key already used in the
    /// org, returns the existing run and `false`.
    pub async fn create_run(&self, run: &NewRun<'_>) -> Result<(AgentRun, bool)> {
        let mut w = self.write_runs(std::slice::from_ref(run), &[]).await?;
        w.created.pop().expect("one answer per run")
    }

    /// Moves a run to `u.status` if the transition is allowed (compare-and-set, so two updaters
    /// cannot both move it), with what the runner records besides: the transcript, the tokens
    /// used and the config's etag (each kept when absent).
    pub async fn record_run(&self, id: &str, u: &UpdateRun) -> Result<AgentRun> {
        let mut w = self.write_runs(&[], &[(id, u)]).await?;
        w.updated.pop().expect("one answer per move")
    }

    /// Records `new` runs and applies `updates`, each answered as its single call would be. An
    /// error of the database fails the call. Moves of one run repeated in a call apply one after
    /// another, in their order, each in a transaction of its own.
    pub async fn write_runs(
        &self,
        new: &[NewRun<'_>],
        updates: &[(&str, &UpdateRun)],
    ) -> Result<RunWrites> {
        let mut updated: Vec<Option<Result<AgentRun>>> = updates.iter().map(|_| None).collect();
        let mut created = None;
        loop {
            // A round moves each run once: the first of its moves not applied yet.
            let mut seen = HashSet::new();
            let round: Vec<usize> = (0..updates.len())
                .filter(|&i| updated[i].is_none() && seen.insert(updates[i].0))
                .collect();
            if round.is_empty() && created.is_some() {
                break;
            }
            let moves: Vec<_> = round.iter().map(|&i| updates[i]).collect();
            let this = if created.is_none() { new } else { &[] };
            let w = self.write_round(this, &moves).await?;
            for (i, answer) in round.into_iter().zip(w.updated) {
                updated[i] = Some(answer);
            }
            created.get_or_insert(w.created);
        }
        Ok(RunWrites {
            created: created.unwrap_or_default(),
            updated: updated.into_iter().flatten().collect(),
        })
    }

    /// One transaction: `updates` name distinct runs.
    async fn write_round(
        &self,
        new: &[NewRun<'_>],
        updates: &[(&str, &UpdateRun)],
    ) -> Result<RunWrites> {
        // Each transition is checked against where the run stands now, and applied only if it
        // still stands there when the move is made.
        let before = self.run_states(updates.iter().map(|(id, _)| *id)).await?;
        let mut refused: HashMap<usize, Error> = HashMap::new();
        let mut moves = Vec::with_capacity(updates.len());
        for (i, (id, u)) in updates.iter().enumerate() {
            match before.get(*id) {
                None => {
                    refused.insert(i, Error::not_found(format!("agent run {id}")));
                }
                Some(b) if !transition_allowed(&b.status, &u.status) => {
                    let why = format!("agent run {id} cannot go from {} to {}", b.status, u.status);
                    refused.insert(i, Error::conflict("invalid-transition", why));
                }
                Some(b) => moves.push((*id, b.status.as_str(), *u)),
            }
        }
        // A key repeated within the batch is the first one's run: only the first is inserted.
        let mut keys = HashSet::new();
        let (ids, firsts): (Vec<String>, Vec<&NewRun>) = new
            .iter()
            .filter(|r| r.idempotency_key.is_none_or(|k| keys.insert((r.org, k))))
            .map(|r| (new_id(), r))
            .unzip();
        let now = now_ms();
        let mut inserted = HashMap::with_capacity(new.len());
        // Runs recorded with nothing moved (how the agent-runner records what a round started,
        // on the round's critical path), or runs moved with nothing recorded (the outcomes of
        // those that finished): on PostgreSQL one statement, outside any transaction. Every
        // move's run was read there with what its event needs (`Before::seen`).
        if self.db.backend == Backend::Postgres
            && (moves.is_empty() || firsts.is_empty())
            && firsts.len() <= CHUNK
            && moves.len() <= CHUNK
        {
            if !firsts.is_empty() {
                for row in insert_runs_publishing(&self.db.pool, &firsts, &ids, now).await? {
                    let run = run_row(&row)?;
                    inserted.insert(run.id.clone(), run);
                }
            }
            let mut moved = HashMap::with_capacity(moves.len());
            if !moves.is_empty() {
                for row in move_runs_publishing(&self.db.pool, &moves, &before, now).await? {
                    let run = run_row(&row)?;
                    moved.insert(run.id.clone(), run);
                }
            }
            return Ok(self
                .answers(new, &ids, &firsts, inserted, updates, refused, moved)
                .await);
        }
        let (guard, mut tx) = self.db.begin_write().await?;
        for (runs, ids) in firsts.chunks(CHUNK).zip(ids.chunks(CHUNK)) {
            for row in insert_runs(&mut tx, runs, ids, now).await? {
                let run = run_row(&row)?;
                inserted.insert(run.id.clone(), run);
            }
        }
        let mut moved = HashMap::with_capacity(moves.len());
        for chunk in moves.chunks(CHUNK) {
            for row in move_runs(&mut tx, chunk, now).await? {
                let run = run_row(&row)?;
                moved.insert(run.id.clone(), run);
            }
        }
        // Their events, in the items' order, and the tokens they added to the day's counters.
        let events: Vec<_> = (ids.iter().filter_map(|id| inserted.get(id)))
            .chain(updates.iter().filter_map(|(id, _)| moved.get(*id)))
            .filter_map(run_event)
            .collect();
        OUTBOX.publish_many(&mut tx, &events).await?;
        let day = now - now.rem_euclid(86_400_000);
        let mut added: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for run in moved.values() {
            let tokens = run.usage.input_tokens + run.usage.output_tokens;
            let delta = tokens - before.get(run.id.as_str()).map_or(0, |b| b.tokens);
            if delta != 0 {
                for team in [run.team_id.as_str(), ""] {
                    *added.entry((run.org_id.as_str(), team)).or_default() += delta;
                }
            }
        }
        add_tokens(&mut tx, &added, day).await?;
        tx.commit().await?;
        drop(guard);
        Ok(self
            .answers(new, &ids, &firsts, inserted, updates, refused, moved)
            .await)
    }

    /// Each item's answer, in the items' order, from what a round inserted and moved.
    #[allow(clippy::too_many_arguments)]
    async fn answers(
        &self,
        new: &[NewRun<'_>],
        ids: &[String],
        firsts: &[&NewRun<'_>],
        mut inserted: HashMap<String, AgentRun>,
        updates: &[(&str, &UpdateRun)],
        mut refused: HashMap<usize, Error>,
        moved: HashMap<String, AgentRun>,
    ) -> RunWrites {
        let mut created = Vec::with_capacity(new.len());
        let mut ids = ids.iter().zip(firsts).peekable();
        for run in new {
            // This run's id, if it was one of those the insert tried.
            let id = ids
                .next_if(|(_, first)| std::ptr::eq(**first, run))
                .map(|(id, _)| id);
            created.push(match id.and_then(|id| inserted.remove(id)) {
                Some(r) => Ok((r, true)),
                None => self.not_inserted(run).await,
            });
        }
        let updated = updates
            .iter()
            .enumerate()
            .map(|(i, (id, _))| match (refused.remove(&i), moved.get(*id)) {
                (Some(e), _) => Err(e),
                (None, Some(run)) => Ok(run.clone()),
                (None, None) => Err(Error::conflict(
                    "invalid-transition",
                    format!("agent run {id} changed while being updated; read it again"),
                )),
            })
            .collect();
        RunWrites { created, updated }
    }

    /// Why a new run was not inserted: its idempotency key was used (the existing run), or its
    /// team does not exist.
    async fn not_inserted(&self, run: &NewRun<'_>) -> Result<(AgentRun, bool)> {
        let existing = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM cs_agent_runs WHERE org_id = $1 AND idempotency_key = $2"
        ))
        .bind(run.org)
        .bind(run.idempotency_key)
        .fetch_optional(&self.db.pool)
        .await?;
        match existing {
            Some(row) => Ok((run_row(&row)?, false)),
            None => Err(Error::invalid(
                "/team_id",
                format!("node {} does not exist in {}", run.team, run.org),
            )),
        }
    }

    async fn run_states<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<String, Before>> {
        let ids: Vec<&str> = ids.collect();
        let postgres = self.db.backend == Backend::Postgres;
        let seen = if postgres { SEEN_COLS } else { "" };
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT id, status, input_tokens + output_tokens AS tokens{seen} FROM cs_agent_runs WHERE id IN {}",
                values_rows(1, 1, chunk.len())
            );
            let mut q = sqlx::query(&sql).persistent(keep_prepared(chunk.len()));
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.db.pool).await? {
                let before = Before {
                    status: row.try_get("status")?,
                    tokens: row.try_get("tokens")?,
                    seen: if postgres {
                        Some(seen_row(&row)?)
                    } else {
                        None
                    },
                };
                out.insert(row.try_get("id")?, before);
            }
        }
        Ok(out)
    }
}

/// Inserts runs whose team exists and whose idempotency key is unused; returns those inserted.
async fn insert_runs(
    tx: &mut Tx,
    runs: &[&NewRun<'_>],
    ids: &[String],
    now: i64,
) -> Result<Vec<AnyRow>> {
    let sql = format!(
        "WITH v (vid, vorg, vteam, vstatus, vtrigger, vkey, vreply, vowner, vlease, vattempts, vdeadline, vstarted, vetag) \
           AS (VALUES {}) \
         INSERT INTO cs_agent_runs (id, org_id, team_id, status, trigger_payload, idempotency_key, created_at, \
           reply_to, lease_owner, lease_until, attempts, deadline_at, started_at, config_etag) \
         SELECT vid, vorg, vteam, vstatus, vtrigger, vkey, $1, vreply, vowner, vlease, vattempts, vdeadline, vstarted, vetag \
         FROM v WHERE EXISTS (SELECT 1 FROM cs_nodes WHERE org_id = v.vorg AND id = v.vteam) \
         ON CONFLICT (org_id, idempotency_key) DO NOTHING RETURNING {RUN_COLS}",
        values_rows(2, runs.len(), 13)
    );
    let mut q = sqlx::query(&sql)
        .persistent(keep_prepared(runs.len()))
        .bind(now);
    for (run, id) in runs.iter().zip(ids) {
        q = q
            .bind(id.as_str())
            .bind(run.org)
            .bind(run.team)
            .bind(if run.running { "running" } else { "queued" })
            .bind(run.trigger.to_string())
            .bind(run.idempotency_key)
            .bind(run.reply_to.map(Value::to_string))
            .bind(run.runner)
            .bind(run.runner.map(|_| now + run.lease_ms))
            .bind(if run.runner.is_some() { 1i64 } else { 0i64 })
            .bind(run.deadline_ms.map(|d| now + d))
            .bind(run.running.then_some(now))
            .bind(run.config_etag);
    }
    Ok(q.fetch_all(&mut **tx).await?)
}

/// What a move sets (`$1`: the time; `v`: the move's values).
pub(super) const MOVE: &str = "status = v.vstatus, \
    started_at = CASE WHEN v.vstatus = 'running' THEN $1 ELSE started_at END, \
    finished_at = CASE WHEN v.vend = 1 THEN $1 ELSE finished_at END, \
    lease_owner = CASE WHEN v.vend = 1 THEN NULL ELSE lease_owner END, \
    lease_until = CASE WHEN v.vend = 1 THEN NULL ELSE lease_until END, \
    summary = COALESCE(v.vsummary, summary), error = COALESCE(v.verror, error), \
    transcript = COALESCE(v.vtranscript, transcript), input_tokens = COALESCE(v.vin, input_tokens), \
    output_tokens = COALESCE(v.vout, output_tokens), config_etag = COALESCE(v.vetag, config_etag)";

/// Applies moves `(run, the status it must still have, the move)`; returns the runs moved.
async fn move_runs(
    tx: &mut Tx,
    moves: &[(&str, &str, &UpdateRun)],
    now: i64,
) -> Result<Vec<AnyRow>> {
    let sql = format!(
        "WITH v (vid, vfrom, vstatus, vend, vsummary, verror, vtranscript, vin, vout, vetag) AS (VALUES {}) \
         UPDATE cs_agent_runs SET {MOVE} FROM v WHERE id = v.vid AND status = v.vfrom RETURNING {RUN_COLS}",
        values_rows(2, moves.len(), 10)
    );
    let mut q = sqlx::query(&sql)
        .persistent(keep_prepared(moves.len()))
        .bind(now);
    for (id, from, u) in moves {
        q = bind_move(q, id, from, u);
    }
    Ok(q.fetch_all(&mut **tx).await?)
}

/// Binds a move's 10 values, `(vid, vfrom, vstatus, vend, vsummary, verror, vtranscript, vin,
/// vout, vetag)`, in the order [`MOVE`]'s statements list them.
pub(super) fn bind_move<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    id: &'q str,
    from: &'q str,
    u: &'q UpdateRun,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(id)
        .bind(from)
        .bind(u.status.as_str())
        .bind(if is_terminal(&u.status) { 1i64 } else { 0i64 })
        .bind(u.summary.as_deref())
        .bind(u.error.as_deref())
        .bind(u.transcript.as_ref().map(Value::to_string))
        .bind(u.usage.map(|x| x.input_tokens))
        .bind(u.usage.map(|x| x.output_tokens))
        .bind(u.config_etag.as_deref())
}

/// Adds tokens to the day's counters of `(org, team)` (`""`: the org's own), in key order so that
/// concurrent batches lock the counters in the same order.
async fn add_tokens(tx: &mut Tx, added: &BTreeMap<(&str, &str), i64>, day: i64) -> Result<()> {
    let added: Vec<_> = added.iter().collect();
    for chunk in added.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO cs_token_usage (org_id, team_id, day, tokens) VALUES {} \
             ON CONFLICT (org_id, team_id, day) DO UPDATE SET tokens = cs_token_usage.tokens + excluded.tokens",
            values_rows(1, chunk.len(), 4)
        );
        let mut q = sqlx::query(&sql).persistent(keep_prepared(chunk.len()));
        for ((org, team), tokens) in chunk {
            q = q.bind(*org).bind(*team).bind(day).bind(**tokens);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

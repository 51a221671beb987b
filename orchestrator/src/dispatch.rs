//! The dispatcher: claims due events and hands them to the agent-runner.
//!
//! Per event: resolve the owning team (routing lookup, cached and invalidated when the routing
//! version moves; the integration's default team when nothing matches), apply the team's
//! `quotas.events_per_minute` (over budget: `throttled`, retried when the budget allows), call
//! `POST /api/v1/run` with the event id as idempotency key. The agent-runner's 429 throttles
//! without using up an attempt; unreachable or 5xx retries with exponential backoff and jitter,
//! honouring `Retry-After`; after the last attempt the event is `dead_lettered`; a 4xx
//! dead-letters at once (retrying cannot help); no route: `unrouted`, kept for replay.
//!
//! Wake-ups: PostgreSQL `LISTEN or_events` (every replica hears every insert) or the in-process
//! notifier on SQLite, plus a timer for the next due retry. No busy polling.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use serde_json::{Value, json};
use switchyard_common::db::Backend;
use switchyard_common::time::now_ms;
use tokio::sync::watch;

use crate::state::{AppState, DispatchLabels};
use crate::store::{Claimed, Settlement, status};
use switchyard_common::clients::{CallError, Lookup, RunRequest};

/// Longest wait between retries.
const MAX_BACKOFF_MS: i64 = 300_000;
/// How long a team's quotas are reused before being read again.
const QUOTA_TTL: Duration = Duration::from_secs(30);

pub struct Dispatcher {
    state: AppState,
    /// Identifies this replica's claims.
    pub worker: String,
    routes: Mutex<RouteCache>,
    quotas: Mutex<HashMap<(String, String), TeamQuota>>,
    /// Integrations by id, reused for `QUOTA_TTL` (they change rarely; two queries per event
    /// otherwise).
    integrations: Mutex<HashMap<String, (Instant, Option<crate::store::Integration>)>>,
}

#[derive(Default)]
struct RouteCache {
    version: i64,
    entries: HashMap<String, Lookup>,
}

struct TeamQuota {
    fetched: Instant,
    per_minute: u32,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

enum Settle {
    Dispatched {
        org: String,
        team: String,
        run_id: String,
        matched: String,
    },
    /// Nobody owns the event (kept for replay), with the reason; `ambiguous` when the identifiers
    /// matched in several orgs.
    Unrouted { why: String, ambiguous: bool },
    Throttled {
        org: String,
        team: String,
        wait_ms: i64,
        why: String,
    },
    Retry {
        org: Option<String>,
        team: Option<String>,
        error: String,
        retry_after_ms: Option<i64>,
    },
    Dead {
        org: Option<String>,
        team: Option<String>,
        error: String,
        why: String,
    },
}

impl Dispatcher {
    pub fn new(state: AppState) -> Arc<Self> {
        Arc::new(Self {
            worker: format!("orchestrator-{}", uuid::Uuid::new_v4().simple()),
            state,
            routes: Mutex::default(),
            quotas: Mutex::default(),
            integrations: Mutex::default(),
        })
    }

    /// Runs until `shutdown` turns true, then releases what it claimed but did not start.
    pub async fn run(self: Arc<Self>, database_url: String, mut shutdown: watch::Receiver<bool>) {
        if self.state.store.db().backend == Backend::Postgres {
            let wake = self.state.store.wake.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let mut listener = loop {
                    match sqlx::postgres::PgListener::connect(&database_url).await {
                        Ok(mut l) => match l.listen("or_events").await {
                            Ok(()) => break l,
                            Err(e) => tracing::warn!(error = %e, "LISTEN failed; retrying"),
                        },
                        Err(e) => tracing::warn!(error = %e, "cannot connect for LISTEN; retrying"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = stop.changed() => return,
                    }
                };
                loop {
                    tokio::select! {
                        n = listener.recv() => match n {
                            Ok(_) => wake.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                                wake.notify_one();
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        let concurrency = self.state.limits.dispatch_concurrency.max(1) as i64;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let batch = match self
                .state
                .store
                .claim(&self.worker, concurrency, self.state.limits.lease_ms)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming events failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                let wait = match self.state.store.next_due().await {
                    Ok(Some(due)) => {
                        Duration::from_millis((due - now_ms()).clamp(10, 5_000) as u64)
                    }
                    _ => Duration::from_secs(5),
                };
                tokio::select! {
                    _ = self.state.store.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            self.refresh_route_version().await;
            let tasks: Vec<_> = batch
                .into_iter()
                .map(|e| {
                    let me = self.clone();
                    {
                        // Continue the webhook's trace (a new one for events stored without).
                        let trace = e
                            .traceparent
                            .as_deref()
                            .and_then(switchyard_common::trace::TraceContext::parse)
                            .map(|t| t.child())
                            .unwrap_or_else(switchyard_common::trace::TraceContext::new_root);
                        tokio::spawn(trace.scope(async move { me.dispatch_one(e).await }))
                    }
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        }
        match self.state.store.release(&self.worker).await {
            Ok(n) if n > 0 => tracing::info!(released = n, "released claimed events on shutdown"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not release claimed events; their lease will expire")
            }
        }
    }

    /// One cheap read per claimed batch: a route fixed a moment ago applies to the next batch.
    async fn refresh_route_version(&self) {
        if let Ok(v) = self.state.config.routing_version().await {
            let mut c = self.routes.lock().expect("poisoned");
            if c.version != v {
                c.entries.clear();
                c.version = v;
            }
        }
    }

    async fn route(
        &self,
        org: Option<&str>,
        ids: &[(String, String)],
    ) -> Result<Lookup, CallError> {
        let key = format!(
            "{}|{}",
            org.unwrap_or(""),
            serde_json::to_string(ids).unwrap_or_default()
        );
        if let Some(hit) = self.routes.lock().expect("poisoned").entries.get(&key) {
            return Ok(hit.clone());
        }
        let found = self.state.config.lookup(org, ids).await?;
        let mut c = self.routes.lock().expect("poisoned");
        if c.entries.len() > 50_000 {
            c.entries.clear();
        }
        c.entries.insert(key, found.clone());
        Ok(found)
    }

    /// `Ok(None)`: within budget; `Ok(Some(ms))`: wait this long.
    async fn over_quota(&self, org: &str, team: &str) -> Result<Option<i64>, CallError> {
        let key = (org.to_owned(), team.to_owned());
        let cached = {
            let q = self.quotas.lock().expect("poisoned");
            q.get(&key)
                .filter(|q| q.fetched.elapsed() < QUOTA_TTL)
                .map(|q| q.limiter.clone())
        };
        let limiter = match cached {
            Some(l) => l,
            None => {
                let config = self.state.config.node_config(org, team).await?;
                let per_minute = config
                    .pointer("/quotas/events_per_minute")
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as u32;
                let mut q = self.quotas.lock().expect("poisoned");
                let entry = q.entry(key).or_insert_with(|| TeamQuota {
                    fetched: Instant::now(),
                    per_minute: 0,
                    limiter: None,
                });
                if entry.per_minute != per_minute || entry.limiter.is_none() && per_minute > 0 {
                    entry.per_minute = per_minute;
                    entry.limiter = NonZeroU32::new(per_minute)
                        .map(|n| Arc::new(RateLimiter::direct(Quota::per_minute(n))));
                }
                entry.fetched = Instant::now();
                entry.limiter.clone()
            }
        };
        Ok(match limiter {
            None => None,
            Some(l) => match l.check() {
                Ok(()) => None,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ));
                    Some(wait.as_millis().max(10) as i64)
                }
            },
        })
    }

    /// Decides and records one claimed event, renewing the claim while the decision takes (a slow
    /// agent-runner must not let another replica claim the event meanwhile).
    async fn dispatch_one(&self, e: Claimed) {
        let lease = self.state.limits.lease_ms;
        let decide = self.decide(&e);
        tokio::pin!(decide);
        let mut renew = tokio::time::interval(Duration::from_millis((lease / 3).max(50) as u64));
        renew.tick().await;
        let outcome = loop {
            tokio::select! {
                o = &mut decide => break o,
                _ = renew.tick() => {
                    if let Err(err) = self.state.store.renew_claim(&e.id, &self.worker, lease).await {
                        tracing::warn!(event = %e.id, error = %err, "could not renew the claim");
                    }
                }
            }
        };
        let settlement = self.settlement(&e, outcome);
        self.count(settlement.status);
        match self
            .state
            .store
            .settle(&e.id, &self.worker, &settlement)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(event = %e.id, worker = %self.worker, "the claim was lost before settling (lease expired and another replica took over); outcome not recorded")
            }
            Err(err) => {
                tracing::error!(event = %e.id, error = %err, "could not record the dispatch outcome; the lease will expire and it is retried")
            }
        }
    }

    fn count(&self, status: &str) {
        self.state
            .dispatches
            .get_or_create(&DispatchLabels {
                outcome: status.into(),
            })
            .inc();
    }

    /// What to record for an outcome: the status, the event's routing, and its timeline entries.
    fn settlement(&self, e: &Claimed, outcome: Settle) -> Settlement {
        let s = &self.state;
        let now = now_ms();
        let attempt = format!("attempt {}", e.attempts);
        match outcome {
            Settle::Dispatched {
                org,
                team,
                run_id,
                matched,
            } => Settlement {
                status: status::DISPATCHED,
                timeline: vec![
                    ("routed", Some(format!("team {team} ({matched})"))),
                    ("dispatch_attempt", Some(attempt)),
                    ("dispatched", Some(format!("run {run_id}"))),
                ],
                org: Some(org),
                team: Some(team),
                run_id: Some(run_id),
                ..Settlement::default()
            },
            Settle::Unrouted { why, ambiguous } => {
                if ambiguous {
                    s.routing_ambiguous.inc();
                }
                Settlement {
                    status: status::UNROUTED,
                    timeline: vec![("unrouted", Some(why.clone()))],
                    error: Some(why),
                    ..Settlement::default()
                }
            }
            Settle::Throttled {
                org,
                team,
                wait_ms,
                why,
            } => {
                let cap = s.limits.max_throttled_seconds.saturating_mul(1000);
                if let Some(since) = e.throttled_since
                    && now.saturating_sub(since) >= cap
                {
                    let error = format!(
                        "throttled without a break for more than {} s ({why})",
                        s.limits.max_throttled_seconds
                    );
                    return dead(
                        Some(org),
                        Some(team),
                        error,
                        &attempt,
                        "the throttling cap ran out".into(),
                    );
                }
                Settlement {
                    status: status::THROTTLED,
                    refund_attempt: true,
                    timeline: vec![(
                        "throttled",
                        Some(format!("{why}; next try in {wait_ms} ms")),
                    )],
                    org: Some(org),
                    team: Some(team),
                    next_attempt_at: Some(now + wait_ms),
                    ..Settlement::default()
                }
            }
            Settle::Retry {
                org,
                team,
                error,
                retry_after_ms,
            } => {
                if e.attempts >= s.limits.max_attempts {
                    let why = format!("gave up after {} attempts", e.attempts);
                    return dead(org, team, error, &attempt, why);
                }
                let wait =
                    retry_after_ms.unwrap_or_else(|| backoff(s.limits.retry_base_ms, e.attempts));
                Settlement {
                    status: status::RETRYING,
                    timeline: vec![(
                        "dispatch_failed",
                        Some(format!("{attempt}: {error}; retry in {wait} ms")),
                    )],
                    org,
                    team,
                    next_attempt_at: Some(now + wait),
                    error: Some(error),
                    ..Settlement::default()
                }
            }
            Settle::Dead {
                org,
                team,
                error,
                why,
            } => dead(org, team, error, &attempt, why),
        }
    }

    async fn integration(
        &self,
        id: &str,
    ) -> switchyard_common::error::Result<Option<crate::store::Integration>> {
        if let Some((at, i)) = self.integrations.lock().expect("poisoned").get(id)
            && at.elapsed() < QUOTA_TTL
        {
            return Ok(i.clone());
        }
        let i = self.state.store.get_integration(id).await?;
        self.integrations
            .lock()
            .expect("poisoned")
            .insert(id.to_owned(), (Instant::now(), i.clone()));
        Ok(i)
    }

    async fn decide(&self, e: &Claimed) -> Settle {
        // 1. The team.
        let integration = match self.integration(&e.integration_id).await {
            Ok(i) => i,
            Err(err) => {
                return Settle::Retry {
                    org: None,
                    team: None,
                    error: format!("store: {err}"),
                    retry_after_ms: None,
                };
            }
        };
        // The integration's default team takes what routing cannot place (never an ambiguous
        // event: that one names several orgs and belongs to none of them).
        let default_team = || match (
            e.org_id
                .clone()
                .or_else(|| integration.as_ref().and_then(|i| i.org_id.clone())),
            integration.as_ref().and_then(|i| i.default_team.clone()),
        ) {
            (Some(o), Some(t)) => Some((o, t, "default team".to_owned())),
            _ => None,
        };
        let (org, team, matched) = match (&e.org_id, &e.team_id) {
            (Some(o), Some(t)) => (o.clone(), t.clone(), "earlier attempt".to_owned()),
            _ if e.identifiers.is_empty() => match default_team() {
                Some(t) => t,
                None => {
                    return Settle::Unrouted {
                        why: "the event carries no routing identifier, and the integration has no default team".into(),
                        ambiguous: false,
                    };
                }
            },
            _ => match self.route(e.org_id.as_deref(), &e.identifiers).await {
                Ok(Lookup::Matched(m)) => (
                    m.org_id,
                    m.team_node_id,
                    format!("{}={}", m.matched_by, m.matched_value),
                ),
                Ok(Lookup::Unrouted(why)) => match default_team() {
                    Some(t) => t,
                    None => {
                        return Settle::Unrouted {
                            why: format!("{why}, and the integration has no default team"),
                            ambiguous: false,
                        };
                    }
                },
                Ok(Lookup::Ambiguous(why)) => {
                    return Settle::Unrouted {
                        why,
                        ambiguous: true,
                    };
                }
                // Our own service refusing the lookup is never a reason to drop an event: keep it
                // unrouted (replayable) with the reason, or give it to the default team.
                Err(CallError::Rejected(err)) => match default_team() {
                    Some(t) => t,
                    None => {
                        return Settle::Unrouted {
                            why: format!(
                                "the routing lookup refused the event's identifiers: {err}"
                            ),
                            ambiguous: false,
                        };
                    }
                },
                Err(err) => {
                    return Settle::Retry {
                        org: e.org_id.clone(),
                        team: None,
                        error: format!("routing lookup: {err}"),
                        retry_after_ms: None,
                    };
                }
            },
        };
        // 2. The team's event budget.
        match self.over_quota(&org, &team).await {
            Ok(None) => {}
            Ok(Some(wait_ms)) => {
                return Settle::Throttled {
                    org,
                    team,
                    wait_ms,
                    why: "over the team's events_per_minute".into(),
                };
            }
            Err(err) => {
                return Settle::Retry {
                    org: Some(org),
                    team: Some(team),
                    error: format!("reading the team's quotas: {err}"),
                    retry_after_ms: None,
                };
            }
        }
        // 3. The run.
        let req = RunRequest {
            org_id: org.clone(),
            team_id: team.clone(),
            trigger: json!({
                "event_id": e.id,
                "source": e.source,
                "event_type": e.event_type,
                "correlation_key": e.correlation_key,
                "identifiers": e.identifiers,
                "payload": e.payload,
            }),
            reply_to: reply_target(&e.source, &e.payload),
            idempotency_key: e.idempotency_key(),
        };
        match self.state.runner.run(&req).await {
            Ok(run_id) => Settle::Dispatched {
                org,
                team,
                run_id,
                matched,
            },
            Err(CallError::Throttled(ra)) => Settle::Throttled {
                org,
                team,
                wait_ms: ra.map(|s| s as i64 * 1000).unwrap_or(5_000),
                why: "the agent-runner is at the team's concurrent-run quota".into(),
            },
            Err(CallError::Unavailable(err)) => Settle::Retry {
                org: Some(org),
                team: Some(team),
                error: format!("agent-runner: {err}"),
                retry_after_ms: None,
            },
            Err(CallError::Overloaded {
                message,
                retry_after,
            }) => Settle::Retry {
                org: Some(org),
                team: Some(team),
                error: format!("agent-runner: {message}"),
                retry_after_ms: Some(retry_after as i64 * 1000),
            },
            Err(CallError::Rejected(err)) => Settle::Dead {
                org: Some(org),
                team: Some(team),
                error: format!("agent-runner: {err}"),
                why: "refused; retrying cannot help".into(),
            },
        }
    }
}

/// Gives up on an event: `dead_lettered`, with the last error and why on its timeline.
fn dead(
    org: Option<String>,
    team: Option<String>,
    error: String,
    attempt: &str,
    why: String,
) -> Settlement {
    Settlement {
        status: status::DEAD_LETTERED,
        org,
        team,
        timeline: vec![
            ("dispatch_failed", Some(format!("{attempt}: {error}"))),
            ("dead_lettered", Some(why)),
        ],
        error: Some(error),
        ..Settlement::default()
    }
}

/// Exponential backoff with ±20% jitter, capped.
pub fn backoff(base_ms: i64, attempt: i64) -> i64 {
    let exp = base_ms
        .saturating_mul(1i64 << attempt.clamp(1, 20).saturating_sub(1))
        .min(MAX_BACKOFF_MS);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    ((exp as f64) * jitter) as i64
}

/// Where the agent's answer goes: the Slack thread, or the GitHub issue or pull request.
pub fn reply_target(source: &str, p: &Value) -> Option<Value> {
    let s = |ptr: &str| {
        p.pointer(ptr).and_then(|v| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.as_i64().map(|n| n.to_string()))
        })
    };
    match source {
        "slack" => {
            let channel = s("/event/channel")
                .or_else(|| s("/channel_id"))
                .or_else(|| s("/channel/id"))?;
            let thread = s("/event/thread_ts")
                .or_else(|| s("/event/ts"))
                .or_else(|| s("/message/ts"));
            Some(
                json!({"kind": "slack", "team": s("/team_id").or_else(|| s("/team/id")), "channel": channel, "thread_ts": thread}),
            )
        }
        "github" => {
            let repo = s("/repository/full_name")?;
            let number = p
                .pointer("/issue/number")
                .or_else(|| p.pointer("/pull_request/number"))
                .and_then(Value::as_i64)?;
            Some(json!({"kind": "github", "repo": repo, "issue_number": number}))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        for attempt in 1..6 {
            let expected = 1000 * (1 << (attempt - 1));
            let b = backoff(1000, attempt);
            assert!(
                b >= expected * 8 / 10 && b <= expected * 12 / 10,
                "attempt {attempt}: {b}"
            );
        }
        assert!(backoff(1000, 40) <= MAX_BACKOFF_MS * 12 / 10);
    }

    #[test]
    fn reply_targets() {
        let slack =
            json!({"team_id": "T1", "event": {"channel": "C1", "ts": "1.5", "thread_ts": "1.0"}});
        assert_eq!(
            reply_target("slack", &slack),
            Some(json!({"kind": "slack", "team": "T1", "channel": "C1", "thread_ts": "1.0"}))
        );
        let gh = json!({"repository": {"full_name": "acme/api"}, "issue": {"number": 7}});
        assert_eq!(
            reply_target("github", &gh),
            Some(json!({"kind": "github", "repo": "acme/api", "issue_number": 7}))
        );
        assert_eq!(
            reply_target("github", &json!({"repository": {"full_name": "a/b"}})),
            None
        );
        assert_eq!(reply_target("pagerduty", &json!({})), None);
    }
}

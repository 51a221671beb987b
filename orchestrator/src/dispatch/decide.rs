//! Deciding one claimed event: its team (routing, cached until the routing version moves; the
//! integration's default team when nothing matches), the team's event budget, and the run.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Value, json};
use switchyard_common::clients::{CallError, Lookup, RunRequest};

use super::Dispatcher;
use super::chain::Segment;
use super::settle::Settle;
use super::starter::Starter;
use crate::incidents::{Rules, RunPlan};
use crate::store::{Claimed, Correlation, Integration};

/// How long a team's quotas (and an integration) are reused before being read again.
pub(super) const QUOTA_TTL: Duration = Duration::from_secs(30);

pub(super) struct TeamQuota {
    fetched: Instant,
    per_minute: u32,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    /// The team's correlation rules, read with its quotas.
    rules: Rules,
}

impl Dispatcher {
    /// One cheap read per claimed batch: a route fixed a moment ago applies to the next batch.
    pub(super) async fn refresh_route_version(&self) {
        if let Ok(v) = self.config.routing_version().await {
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
        let found = self.config.lookup(org, ids).await?;
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
                let config = self.config.node_config(org, team).await?;
                let per_minute = config
                    .pointer("/quotas/events_per_minute")
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as u32;
                let mut q = self.quotas.lock().expect("poisoned");
                let entry = q.entry(key).or_insert_with(|| TeamQuota {
                    fetched: Instant::now(),
                    per_minute: 0,
                    limiter: None,
                    rules: Rules::default(),
                });
                entry.rules = Rules::from_config(&config);
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

    /// The team's turn to correlate in this replica (see `Dispatcher::team_turns`).
    pub(super) fn team_turn(&self, org: &str, team: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.team_turns.lock().expect("poisoned");
        if turns.len() > 10_000 {
            turns.retain(|_, t| Arc::strong_count(t) > 1);
        }
        turns
            .entry((org.to_owned(), team.to_owned()))
            .or_default()
            .clone()
    }

    /// The team's correlation rules, as read with its quotas (the defaults if never read).
    fn rules(&self, org: &str, team: &str) -> Rules {
        self.quotas
            .lock()
            .expect("poisoned")
            .get(&(org.to_owned(), team.to_owned()))
            .map(|q| q.rules.clone())
            .unwrap_or_default()
    }

    async fn integration(&self, id: &str) -> switchyard_common::error::Result<Option<Integration>> {
        if let Some((at, i)) = self.integrations.lock().expect("poisoned").get(id)
            && at.elapsed() < QUOTA_TTL
        {
            return Ok(i.clone());
        }
        let i = self.store.integration_row(id).await?;
        self.integrations
            .lock()
            .expect("poisoned")
            .insert(id.to_owned(), (Instant::now(), i.clone()));
        Ok(i)
    }

    /// Correlates `e` in the segment, on the team's turn (a statement that fails ends the
    /// segment: see `Segment::failed`).
    async fn correlate(
        &self,
        seg: &mut Segment,
        e: &Claimed,
        (org, team): (&str, &str),
        rules: &Rules,
    ) -> Result<Option<Correlation>, String> {
        seg.turn(self, org, team).await?;
        let batch = seg.open(self).await?;
        match self.store.correlate_in(batch, e, org, team, rules).await {
            Ok(c) => Ok(c),
            Err(err) => Err(seg.fail(err)),
        }
    }

    pub(super) async fn decide(&self, e: &Claimed, seg: &mut Segment, starter: &Starter) -> Settle {
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
        // 3. The incident: the signal opens or joins one, and the plan says whether it runs.
        // A team that runs per event (`agent.trigger: "event"`) keeps no incidents: its events
        // go straight to their runs, as before incidents, and pay nothing for correlation.
        let rules = self.rules(&org, &team);
        let correlated = if rules.per_incident {
            self.correlate(seg, e, (&org, &team), &rules).await
        } else {
            Ok(None)
        };
        let context = match correlated {
            Err(error) => {
                return Settle::Retry {
                    org: Some(org),
                    team: Some(team),
                    error,
                    retry_after_ms: None,
                };
            }
            Ok(None) if rules.per_incident => {
                return Settle::Joined {
                    org,
                    team,
                    matched,
                    incident: None,
                    run_id: None,
                    why: "a resolution of no open incident starts no run".into(),
                };
            }
            Ok(None) => None,
            Ok(Some(c)) => match c.plan {
                RunPlan::Start => c.context.map(|ctx| (c.incident_id, ctx)),
                RunPlan::Wait { run_id } => {
                    return Settle::Joined {
                        org,
                        team,
                        matched,
                        incident: Some(c.incident_id),
                        run_id: None,
                        why: format!(
                            "run {run_id} is going: it takes this signal between its turns, or a follow-up run does once it ends"
                        ),
                    };
                }
                RunPlan::Seen { run_id } => {
                    return Settle::Joined {
                        org,
                        team,
                        matched,
                        incident: Some(c.incident_id),
                        why: format!("run {run_id} had it in its context"),
                        run_id: Some(run_id),
                    };
                }
                RunPlan::None(why) => {
                    return Settle::Joined {
                        org,
                        team,
                        matched,
                        incident: Some(c.incident_id),
                        run_id: None,
                        why,
                    };
                }
            },
        };
        // 4. The run. No transaction or team lock is held across the call.
        if let Err(error) = seg.commit(&self.store).await {
            return Settle::Retry {
                org: Some(org),
                team: Some(team),
                error,
                retry_after_ms: None,
            };
        }
        let mut trigger = json!({
            "event_id": e.id,
            "source": e.source,
            "event_type": e.event_type,
            "correlation_key": e.correlation_key,
            "identifiers": e.identifiers,
            "payload": e.payload,
        });
        if let Some((_, ctx)) = &context {
            trigger["incident"] = ctx.clone();
        }
        let req = RunRequest {
            org_id: org.clone(),
            team_id: team.clone(),
            trigger,
            reply_to: e.reply_to.clone(),
            idempotency_key: e.idempotency_key(),
        };
        match starter.run(req).await {
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

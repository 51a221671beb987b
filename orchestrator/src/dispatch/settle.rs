//! What each dispatch outcome records: the status, the event's routing, its timeline entries and,
//! for waiting statuses, when to try again.

use rand::Rng;
use switchyard_common::time::now_ms;

use super::Dispatcher;
use crate::store::{Claimed, Settlement, Status};

/// Longest wait between retries.
const MAX_BACKOFF_MS: i64 = 300_000;

pub(super) enum Settle {
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
    /// The signal joined an incident and starts no run of its own: a run had it (`run_id`), or
    /// none will (`why`).
    Joined {
        org: String,
        team: String,
        matched: String,
        incident: Option<String>,
        run_id: Option<String>,
        why: String,
    },
}

impl Dispatcher {
    /// What to record for an outcome: the status, the event's routing, and its timeline entries,
    /// dated now (when it was decided: the runner accepted the run, the signal joined its
    /// incident), not when a segment or the settler commits it.
    pub(super) fn settlement(&self, e: &Claimed, outcome: Settle) -> Settlement {
        let now = now_ms();
        Settlement {
            at: Some(now),
            ..self.decided(e, outcome, now)
        }
    }

    fn decided(&self, e: &Claimed, outcome: Settle, now: i64) -> Settlement {
        let s = self;
        match outcome {
            Settle::Dispatched {
                org,
                team,
                run_id,
                matched,
            } => Settlement {
                status: Status::Dispatched,
                // `routed`, `dispatch_attempt` and `dispatched` are read off the row.
                routed_by: Some(matched),
                org: Some(org),
                team: Some(team),
                run_id: Some(run_id),
                ..Settlement::to(Status::Received)
            },
            Settle::Unrouted { why, ambiguous } => {
                if ambiguous {
                    s.metrics.routing_ambiguous.inc();
                }
                Settlement {
                    status: Status::Unrouted,
                    timeline: vec![("unrouted", Some(why.clone()))],
                    error: Some(why),
                    ..Settlement::to(Status::Received)
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
                        e.attempts,
                        "the throttling cap ran out".into(),
                    );
                }
                Settlement {
                    status: Status::Throttled,
                    refund_attempt: true,
                    timeline: vec![(
                        "throttled",
                        Some(format!("{why}; next try in {wait_ms} ms")),
                    )],
                    org: Some(org),
                    team: Some(team),
                    next_attempt_at: Some(now + wait_ms),
                    ..Settlement::to(Status::Received)
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
                    return dead(org, team, error, e.attempts, why);
                }
                let wait =
                    retry_after_ms.unwrap_or_else(|| backoff(s.limits.retry_base_ms, e.attempts));
                Settlement {
                    status: Status::Retrying,
                    timeline: vec![(
                        "dispatch_failed",
                        Some(format!(
                            "attempt {}: {error}; retry in {wait} ms",
                            e.attempts
                        )),
                    )],
                    org,
                    team,
                    next_attempt_at: Some(now + wait),
                    error: Some(error),
                    ..Settlement::to(Status::Received)
                }
            }
            Settle::Dead {
                org,
                team,
                error,
                why,
            } => dead(org, team, error, e.attempts, why),
            Settle::Joined {
                org,
                team,
                matched,
                incident,
                run_id,
                why,
            } => {
                let joined = match &incident {
                    Some(i) => format!("incident {i}: {why}"),
                    None => why,
                };
                Settlement {
                    status: Status::Dispatched,
                    timeline: vec![
                        ("routed", Some(format!("team {team} ({matched})"))),
                        ("joined_incident", Some(joined)),
                    ],
                    org: Some(org),
                    team: Some(team),
                    run_id,
                    ..Settlement::to(Status::Received)
                }
            }
        }
    }
}

/// Gives up on an event: `dead_lettered`, with the last error and why on its timeline.
fn dead(
    org: Option<String>,
    team: Option<String>,
    error: String,
    attempts: i64,
    why: String,
) -> Settlement {
    Settlement {
        status: Status::DeadLettered,
        org,
        team,
        timeline: vec![
            (
                "dispatch_failed",
                Some(format!("attempt {attempts}: {error}")),
            ),
            ("dead_lettered", Some(why)),
        ],
        error: Some(error),
        ..Settlement::to(Status::Received)
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

//! The dispatcher: claims due events and hands them to the agent-runner.
//!
//! Per event: resolve the owning team (routing lookup, cached and invalidated when the routing
//! version moves; the integration's default team when nothing matches), apply the team's
//! `quotas.events_per_minute` (over budget: `throttled`, retried when the budget allows), ask the
//! agent-runner for the run with the event id as idempotency key (a round's runs in one call: see
//! [`starter`]). The agent-runner's 429 throttles without using up an attempt; unreachable or 5xx
//! retries with exponential backoff and jitter, honouring `Retry-After`; after the last attempt
//! the event is `dead_lettered`; a 4xx dead-letters at once (retrying cannot help); no route:
//! `unrouted`, kept for replay.
//!
//! Wake-ups: PostgreSQL `LISTEN or_events` (every replica hears every insert) or the in-process
//! notifier on SQLite, plus a timer for the next due retry. No busy polling.

//!
//! # Layout
//! - this file: the [`Dispatcher`] (its context, claiming loop and per-event lease renewal);
//! - [`chain`]: one correlation key's claimed events, in order, their writes in one transaction;
//! - [`decide`]: routing, quotas and the run request for one event (with their caches);
//! - [`settle`]: what each outcome records (status, timeline, backoff);
//! - [`settler`]: the events whose runs started, settled many chains' to a transaction;
//! - [`starter`]: the runs chains start, many chains' to one call to the agent-runner.

mod chain;
mod decide;
mod settle;
mod settler;
mod starter;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use switchyard_common::clients::{ConfigClient, Lookup, RunnerClient};
use switchyard_common::telemetry::Metrics;
use switchyard_common::time::now_ms;
use tokio::sync::watch;

use crate::group_commit::Pressure;
use crate::settings::Limits;
use crate::store::{Claimed, Integration, Store};

pub use settle::backoff;

/// Events of one correlation key a claim takes at most (a storm on one incident drains this many
/// per claim; `store::claim` also bounds their bytes).
const PER_KEY: i64 = 256;

/// How long a claim's slowest chains may hold back the next claim once half its chains ended.
const STRAGGLERS: Duration = Duration::from_millis(200);

/// The longest a chain waits for busy webhook deliveries before each of its events (ADR 0020):
/// however long a burst lasts, each chain still dispatches a few events a second.
const YIELD: Duration = Duration::from_millis(200);

/// Chains that never yield, so long as no more run: their work is small beside a burst's
/// deliveries, and a storm on one key is one chain (yielding there only slowed its drain).
const FEW_CHAINS: usize = 4;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispatchLabels {
    /// `dispatched`, `retrying`, `throttled`, `unrouted`, `dead_lettered`.
    pub outcome: String,
}

/// The dispatcher's counters.
#[derive(Clone)]
struct DispatchMetrics {
    dispatches: Family<DispatchLabels, Counter>,
    /// Events left unrouted because their identifiers matched in several organisations: a rising
    /// count means two tenants claim the same identifiers (see the events' `last_error`).
    routing_ambiguous: Counter,
    /// Seconds chains spent yielding to webhook deliveries (summed over chains).
    yielded: Counter<f64, AtomicU64>,
    /// How long each claim took, and how many events it took (claims that found nothing
    /// included): with the rounds', where a steady rate's dispatch time goes.
    claim_seconds: Histogram,
    claimed: Counter,
    /// Each round, from its claim until its last chain ended (or the next claim, for the
    /// stragglers a claim leaves behind).
    round_seconds: Histogram,
}

impl DispatchMetrics {
    /// Ends the round in progress at `at`, if one is.
    fn end_round(&self, round: &mut Option<tokio::time::Instant>, at: tokio::time::Instant) {
        if let Some(started) = round.take() {
            self.round_seconds.observe((at - started).as_secs_f64());
        }
    }
}

/// The dispatcher and its context: the store, the config-service and agent-runner clients, the
/// limits, and caches of routes, quotas and integrations.
pub struct Dispatcher {
    store: Store,
    config: ConfigClient,
    runner: RunnerClient,
    limits: Limits,
    metrics: DispatchMetrics,
    /// Identifies this replica's claims.
    pub worker: String,
    routes: Mutex<RouteCache>,
    quotas: Mutex<HashMap<(String, String), decide::TeamQuota>>,
    /// Integrations by id, reused for `decide::QUOTA_TTL` (they change rarely; two queries per
    /// event otherwise).
    integrations: Mutex<HashMap<String, (Instant, Option<Integration>)>>,
    /// One correlation at a time per team in this replica: the store serialises a team's
    /// correlations across replicas with a lock held in a transaction, and tasks queued here
    /// instead of there hold no database connection while they wait (a storm on one team must not
    /// take the connections the webhook path needs).
    team_turns: Mutex<HashMap<(String, String), TeamTurn>>,
    /// Chains holding an open transaction (a segment) at once: half the database pool, so that
    /// however many chains run, the webhook path and the claim always find a connection.
    segments: Arc<tokio::sync::Semaphore>,
    /// The webhook deliveries waiting for this replica's event writer, which chains yield to.
    pressure: Arc<Pressure>,
    /// Chains running now (see `FEW_CHAINS`).
    chains: AtomicUsize,
}

/// A team's turn to correlate (see `Dispatcher::team_turns`).
type TeamTurn = Arc<tokio::sync::Mutex<()>>;

#[derive(Default)]
struct RouteCache {
    version: i64,
    entries: HashMap<String, Lookup>,
}

impl Dispatcher {
    /// A dispatcher whose counters are registered in `registry`.
    pub fn new(
        store: Store,
        config: ConfigClient,
        runner: RunnerClient,
        limits: Limits,
        pressure: Arc<Pressure>,
        registry: &Metrics,
    ) -> Arc<Self> {
        let metrics = DispatchMetrics {
            dispatches: Family::default(),
            routing_ambiguous: Counter::default(),
            yielded: Counter::default(),
            claim_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            claimed: Counter::default(),
            round_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
        };
        registry.register(
            "dispatches",
            "Dispatch attempts by outcome",
            metrics.dispatches.clone(),
        );
        registry.register(
            "routing_ambiguous",
            "Events unrouted because their identifiers matched in several organisations",
            metrics.routing_ambiguous.clone(),
        );
        registry.register(
            "dispatch_yielded_seconds",
            "Seconds dispatch chains waited for busy webhook deliveries before an event, summed over chains",
            metrics.yielded.clone(),
        );
        registry.register(
            "dispatch_claim_seconds",
            "How long claiming due events took, per claim",
            metrics.claim_seconds.clone(),
        );
        registry.register(
            "dispatch_claimed_events",
            "Events claimed for dispatch (over the claims' count: events per claim)",
            metrics.claimed.clone(),
        );
        registry.register(
            "dispatch_round_seconds",
            "Dispatch rounds: from a claim that took events until its chains ended (or the next claim)",
            metrics.round_seconds.clone(),
        );
        Arc::new(Self {
            worker: format!("orchestrator-{}", uuid::Uuid::new_v4().simple()),
            config,
            runner,
            limits,
            metrics,
            routes: Mutex::default(),
            quotas: Mutex::default(),
            integrations: Mutex::default(),
            team_turns: Mutex::default(),
            segments: Arc::new(tokio::sync::Semaphore::new(
                (store.pool_size() as usize / 2).max(1),
            )),
            pressure,
            chains: Default::default(),
            store,
        })
    }

    /// Runs until `shutdown` turns true, then releases what it claimed but did not start; at
    /// once when the dispatch concurrency is 0 (a replica that only acknowledges).
    ///
    /// Chains run up to `dispatch_concurrency` at once. The next claim is made when every chain
    /// of the last has ended, or, once [`STRAGGLERS`] passed since it, when half of them have: a
    /// slow run holds back its own key, not the others (a chain's key is not claimable while its
    /// events are leased to it, so a claim never overlaps a chain in flight). Rounds, rather than
    /// a claim per freed slot, keep a claim's runs arriving at the runner together, which is
    /// what lets it record them in one batch (ADR 0019).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let concurrency = self
            .limits
            .dispatch_concurrency
            .unwrap_or(match self.store.backend() {
                switchyard_common::db::Backend::Postgres => 128,
                switchyard_common::db::Backend::Sqlite => 32,
            });
        if concurrency == 0 {
            tracing::info!("dispatch is off on this replica (dispatch concurrency 0)");
            return;
        }
        let wakeups = self.store.wakeups();
        let (settler, settling) = settler::Settler::start(self.store.clone(), self.worker.clone());
        let (starter, starting) = starter::Starter::start(self.runner.clone());
        let mut running = tokio::task::JoinSet::new();
        // Claiming found nothing due: wait for news before claiming again.
        let mut idle = false;
        let mut claimed_at = tokio::time::Instant::now();
        // When the round running now was claimed (for its length).
        let mut round: Option<tokio::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let free = concurrency - running.len();
            let stragglers = free >= concurrency.div_ceil(2) && claimed_at.elapsed() >= STRAGGLERS;
            if !idle && (running.is_empty() || stragglers) {
                claimed_at = tokio::time::Instant::now();
                // The routing version is read beside the claim, not after it: the round starts
                // a round trip sooner (a route fixed a moment ago still applies to this round).
                let claiming = async {
                    let claimed = self
                        .store
                        .claim(&self.worker, free as i64, PER_KEY, self.limits.lease_ms)
                        .await;
                    let took = claimed_at.elapsed();
                    self.metrics.claim_seconds.observe(took.as_secs_f64());
                    claimed
                };
                let (claimed, ()) = tokio::join!(claiming, self.refresh_route_version());
                self.metrics.end_round(&mut round, claimed_at);
                match claimed {
                    Ok(batch) if !batch.is_empty() => {
                        self.metrics.claimed.inc_by(batch.len() as u64);
                        round = Some(claimed_at);
                        let chains = chains(batch);
                        // Fewer keys than asked for: nothing else is due now.
                        idle = chains.len() < free;
                        self.chains.fetch_add(chains.len(), Ordering::Relaxed);
                        for chain in chains {
                            let (me, settler, starter) =
                                (self.clone(), settler.clone(), starter.clone());
                            running.spawn(async move {
                                me.dispatch_chain(chain, &settler, &starter).await
                            });
                        }
                        continue;
                    }
                    Ok(_) => idle = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming events failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                }
            }
            // Something to wait for: a chain ending (its slot frees, and its key's next events
            // may now be due), or, when idle, new events or the next retry falling due.
            let wait = if idle && running.is_empty() {
                match self.store.next_due().await {
                    Ok(Some(due)) => {
                        Duration::from_millis((due - now_ms()).clamp(10, 5_000) as u64)
                    }
                    _ => Duration::from_secs(5),
                }
            } else {
                // Chains run: each that ends claims again; until then, look again within a second
                // for retries falling due.
                Duration::from_secs(1)
            };
            let half_free = free >= concurrency.div_ceil(2);
            tokio::select! {
                Some(_) = running.join_next(), if !running.is_empty() => {
                    idle = false;
                    if running.is_empty() {
                        self.metrics.end_round(&mut round, tokio::time::Instant::now());
                    }
                }
                _ = tokio::time::sleep_until(claimed_at + STRAGGLERS), if !idle && half_free && !running.is_empty() => {}
                _ = wakeups.next(), if idle => idle = false,
                _ = tokio::time::sleep(wait), if idle => idle = false,
                _ = shutdown.changed() => {}
            }
        }
        while running.join_next().await.is_some() {}
        // Every chain has ended: nothing waits for the settler or the starter any more.
        drop((settler, starter));
        let _ = tokio::join!(settling, starting);
        match self.store.release(&self.worker, None).await {
            Ok(n) if n > 0 => tracing::info!(released = n, "released claimed events on shutdown"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not release claimed events; their lease will expire")
            }
        }
    }
}

/// Claimed events grouped by correlation key, each group in arrival order (claims come sorted).
fn chains(claimed: Vec<Claimed>) -> Vec<Vec<Claimed>> {
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut out: Vec<Vec<Claimed>> = Vec::new();
    for e in claimed {
        let key = (e.integration_id.clone(), e.correlation_key.clone());
        match index.get(&key) {
            Some(&i) => out[i].push(e),
            None => {
                index.insert(key, out.len());
                out.push(vec![e]);
            }
        }
    }
    out
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
        assert!(backoff(1000, 40) <= 300_000 * 12 / 10);
    }
}

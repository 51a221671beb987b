//! Outbound delivery of Switchyard's own events to subscriptions (ADR 0011).
//!
//! Three loops share one narrow context ([`Outbound`]):
//! - **relay**: takes the config-service's run events over (`GET /api/v1/internal/outbox`),
//!   stores them in this side's outbox and acknowledges them; a crash in between stores them
//!   again, which the outbox's primary key and the deliveries' uniqueness make harmless;
//! - **fan-out**: turns outbox rows into one delivery per matching subscription;
//! - **delivery**: claims due deliveries (leased, at most `delivery_per_endpoint` in flight per
//!   subscription across replicas), signs them with the Standard Webhooks scheme, POSTs them
//!   with no redirects and a timeout, logs every attempt, and schedules the next one (5 s, 5 min,
//!   30 min, 2 h, 5 h, 10 h, 10 h with ±10% jitter, or a later `Retry-After`). At most
//!   `delivery_concurrency` deliveries are in memory at once, whatever the backlog.
//!
//! # Layout
//! - this file: the context and its loops;
//! - [`deliver`]: one attempt (signature, request, answer);
//! - [`target`]: which URLs and addresses deliveries may reach.

pub mod deliver;
pub mod slack;
pub mod target;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use rand::Rng;
use switchyard_common::clients::ConfigClient;
use switchyard_common::crypto::Keyring;
use switchyard_common::telemetry::Metrics;
use switchyard_common::time::now_ms;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::settings::Limits;
use crate::store::{DueDelivery, Next, Settled, Store};

/// Outbox rows fanned out per transaction.
const FAN_OUT_BATCH: i64 = 200;
/// Run events taken from the config-service per call.
const RELAY_BATCH: u32 = 200;
/// How often idle loops look for work another replica or service wrote.
const IDLE: Duration = Duration::from_millis(200);
/// The relay's wait after less than a full batch: a steady stream taken over as it comes cost two
/// calls and a transaction every run or two (ADR 0018's amendment).
const RELAY_PACE: Duration = Duration::from_millis(100);
/// Attempts recorded in one transaction at most.
const SETTLE_BATCH: usize = 256;
/// How long signing secrets are reused: a rotation signs with the new secret within this time.
const SECRETS_TTL: Duration = Duration::from_secs(1);

/// How long a `slack` subscription's incoming-webhook URL is reused: a new URL set in the
/// secrets store is used within this time.
const SLACK_URL_TTL: Duration = Duration::from_secs(10);

/// A subscription's signing secrets, as opened from the store.
type Secrets = Arc<Vec<String>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `succeeded`, `retrying` or `failed`.
    pub outcome: String,
}

#[derive(Clone)]
struct OutboundMetrics {
    attempts: Family<DeliveryLabels, Counter>,
    seconds: Histogram,
    disabled: Counter,
}

/// The waits between attempts, parsed from `--delivery-schedule`.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    s.split(',')
        .map(|part| {
            humantime::parse_duration(part.trim())
                .map_err(|e| format!("--delivery-schedule: {part:?}: {e}"))
        })
        .collect()
}

/// The delivery worker's context: the store, the keyring (to open signing secrets), the
/// config-service (for its run events), one HTTP client, the limits.
pub struct Outbound {
    store: Store,
    keyring: Keyring,
    config: ConfigClient,
    http: reqwest::Client,
    limits: Limits,
    schedule: Vec<Duration>,
    metrics: OutboundMetrics,
    /// Identifies this replica's claims.
    pub worker: String,
    /// Rings when the fan-out wrote deliveries.
    fanned: Notify,
    /// Rings when attempts were recorded: their subscriptions have free slots again.
    settled: Notify,
    secrets: Mutex<HashMap<String, (Instant, Secrets)>>,
    /// `slack` subscriptions' incoming-webhook URLs by (org, secret name).
    slack_urls: Mutex<HashMap<(String, String), (Instant, String)>>,
}

impl Outbound {
    pub fn new(
        store: Store,
        keyring: Keyring,
        config: ConfigClient,
        limits: Limits,
        registry: &Metrics,
    ) -> anyhow::Result<Arc<Self>> {
        let schedule = parse_schedule(&limits.delivery_schedule).map_err(anyhow::Error::msg)?;
        let timeout = Duration::from_millis(limits.delivery_timeout_ms.max(1));
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(limits.delivery_per_endpoint.max(1) as usize)
            .tcp_nodelay(true);
        if !limits.allow_private_subscription_targets {
            http = http.dns_resolver(Arc::new(target::PublicOnly));
        }
        let metrics = OutboundMetrics {
            attempts: Family::default(),
            seconds: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            disabled: Counter::default(),
        };
        registry.register(
            "outbound_attempts",
            "Outbound delivery attempts by what followed",
            metrics.attempts.clone(),
        );
        registry.register(
            "outbound_attempt_seconds",
            "How long outbound delivery attempts took",
            metrics.seconds.clone(),
        );
        registry.register(
            "subscriptions_disabled",
            "Subscriptions disabled after failing for too long",
            metrics.disabled.clone(),
        );
        Ok(Arc::new(Self {
            store,
            keyring,
            config,
            http: http.build()?,
            limits,
            schedule,
            metrics,
            worker: format!("outbound-{}", uuid::Uuid::new_v4().simple()),
            fanned: Notify::new(),
            settled: Notify::new(),
            secrets: Mutex::default(),
            slack_urls: Mutex::default(),
        }))
    }

    /// Runs the relay, the fan-out and the delivery loops until `shutdown` turns true; then
    /// lets attempts in flight finish and releases what this replica claimed.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let relay = tokio::spawn(self.clone().relay(shutdown.clone()));
        let fan_out = tokio::spawn(self.clone().fan_out(shutdown.clone()));
        let (settle_tx, settle_rx) =
            tokio::sync::mpsc::channel(self.limits.delivery_concurrency.max(1));
        let settling = tokio::spawn(self.clone().settle(settle_rx));
        self.clone().deliver(shutdown, settle_tx).await;
        // Every attempt made has been handed to the settler, whose channel is now closed.
        let _ = settling.await;
        let _ = relay.await;
        let _ = fan_out.await;
        match self.store.release_deliveries(&self.worker).await {
            Ok(n) if n > 0 => {
                tracing::info!(released = n, "released claimed deliveries on shutdown")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not release claimed deliveries; their lease will expire")
            }
        }
    }

    async fn relay(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = IDLE;
        while !*shutdown.borrow() {
            let wait = match self.config.pending_run_events(RELAY_BATCH).await {
                Ok(events) if events.is_empty() => IDLE,
                Ok(events) => {
                    let full = events.len() >= RELAY_BATCH as usize;
                    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
                    let taken = match self.store.import_outbox(&events).await {
                        Ok(()) => self
                            .config
                            .ack_run_events(&ids)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match taken {
                        Ok(()) => {
                            backoff = IDLE;
                            if full {
                                continue;
                            }
                            RELAY_PACE
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not take run events over; they wait in the config-service");
                            Duration::from_secs(1)
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, waiting = ?backoff, "the config-service's outbox is unreachable; run events wait there");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn fan_out(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let wait = match self.store.fan_out(FAN_OUT_BATCH).await {
                Ok(0) => IDLE,
                Ok(_) => {
                    self.fanned.notify_one();
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fanning out the outbox failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Records finished attempts in batches: whatever is waiting when the previous batch is
    /// written goes in the next, one transaction for all (a commit per delivery otherwise).
    async fn settle(self: Arc<Self>, mut done: tokio::sync::mpsc::Receiver<Settled>) {
        let disable_after = self
            .limits
            .subscription_disable_after_seconds
            .saturating_mul(1000);
        let mut batch = Vec::with_capacity(SETTLE_BATCH);
        while done.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
            match self
                .store
                .settle_deliveries(&batch, &self.worker, disable_after)
                .await
            {
                Ok(disabled) => {
                    for d in disabled {
                        self.metrics.disabled.inc();
                        tracing::warn!(subscription = %d.subscription_id, failing_since = d.failing_since,
                            "subscription disabled: every delivery failed for too long");
                    }
                }
                Err(e) => tracing::error!(deliveries = batch.len(), error = %e,
                    "could not record attempts; their claims run out and they are made again"),
            }
            batch.clear();
            self.settled.notify_one();
        }
    }

    async fn deliver(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        settle: tokio::sync::mpsc::Sender<Settled>,
    ) {
        let slots = Arc::new(Semaphore::new(self.limits.delivery_concurrency.max(1)));
        let mut running = JoinSet::new();
        while !*shutdown.borrow() {
            // Reap finished attempts so the set stays as small as the slots.
            while running.try_join_next().is_some() {}
            let free = slots.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = running.join_next() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let claimed = self
                .store
                .claim_deliveries(
                    &self.worker,
                    free as i64,
                    self.lease_ms(),
                    self.limits.delivery_per_endpoint,
                )
                .await;
            let batch = match claimed {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming deliveries failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                let wait = match self.store.next_delivery_due().await {
                    Ok(Some(due)) => Duration::from_millis((due - now_ms()).clamp(5, 1_000) as u64),
                    _ => Duration::from_secs(1),
                };
                tokio::select! {
                    _ = self.fanned.notified() => {}
                    _ = self.settled.notified() => {}
                    _ = running.join_next(), if !running.is_empty() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            for d in batch {
                let permit = slots
                    .clone()
                    .try_acquire_owned()
                    .expect("claimed no more than the free slots");
                let (me, settle) = (self.clone(), settle.clone());
                running.spawn(async move {
                    let settled = me.deliver_one(d).await;
                    // The slot is held until the settler has the attempt: memory stays bounded.
                    let _ = settle.send(settled).await;
                    drop(permit);
                });
            }
        }
        // Attempts in flight end within their timeout.
        while running.join_next().await.is_some() {}
    }

    /// A claim outlives the longest attempt, so no other replica takes a delivery in flight.
    fn lease_ms(&self) -> i64 {
        self.limits.delivery_timeout_ms as i64 * 3 + 5_000
    }

    async fn signing_secrets(&self, subscription: &str) -> anyhow::Result<Secrets> {
        if let Some((at, s)) = self
            .secrets
            .lock()
            .expect("cache poisoned")
            .get(subscription)
            && at.elapsed() < SECRETS_TTL
        {
            return Ok(s.clone());
        }
        let s = Arc::new(
            self.store
                .signing_secrets(&self.keyring, subscription)
                .await?,
        );
        let mut cache = self.secrets.lock().expect("cache poisoned");
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < SECRETS_TTL);
        }
        cache.insert(subscription.to_owned(), (Instant::now(), s.clone()));
        Ok(s)
    }

    /// A `slack` subscription's incoming-webhook URL, from the org secret it names (reused for
    /// [`SLACK_URL_TTL`]); `Err` says why there is none, never the URL.
    async fn slack_url(&self, org: &str, name: &str) -> Result<String, String> {
        let key = (org.to_owned(), name.to_owned());
        if let Some((at, url)) = self.slack_urls.lock().expect("cache poisoned").get(&key)
            && at.elapsed() < SLACK_URL_TTL
        {
            return Ok(url.clone());
        }
        let url = self.config.secret_value(org, name).await.map_err(|e| {
            format!("the incoming-webhook URL in secret {name} cannot be read: {e}")
        })?;
        let mut cache = self.slack_urls.lock().expect("cache poisoned");
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < SLACK_URL_TTL);
        }
        cache.insert(key, (Instant::now(), url.clone()));
        Ok(url)
    }

    /// Makes one attempt; answers what to record.
    async fn deliver_one(&self, d: DueDelivery) -> Settled {
        let timeout = Duration::from_millis(self.limits.delivery_timeout_ms.max(1));
        let allow_private = self.limits.allow_private_subscription_targets;
        let not_made = |why: String| {
            (
                crate::store::AttemptOutcome {
                    error: Some(why),
                    ..Default::default()
                },
                None,
            )
        };
        let (outcome, retry_after) = if d.kind == "slack" {
            let name = d.url_secret.as_deref().unwrap_or_default();
            match self.slack_url(&d.org_id, name).await {
                Ok(url) => {
                    deliver::attempt_slack(&self.http, &d, &url, allow_private, timeout).await
                }
                Err(why) => not_made(why),
            }
        } else {
            match self.signing_secrets(&d.subscription_id).await {
                Ok(secrets) => {
                    deliver::attempt(&self.http, &d, &secrets, allow_private, timeout).await
                }
                Err(e) => {
                    tracing::error!(subscription = %d.subscription_id, error = %e, "cannot open the subscription's signing secrets");
                    not_made("the signing secret could not be opened".into())
                }
            }
        };
        self.metrics
            .seconds
            .observe(outcome.latency_ms as f64 / 1000.0);
        let next = if outcome.succeeded {
            Next::Done
        } else {
            after_failure(&self.schedule, d.attempt, retry_after, now_ms())
        };
        let label = match next {
            Next::Done => "succeeded",
            Next::RetryAt(_) => "retrying",
            Next::GiveUp => "failed",
        };
        self.metrics
            .attempts
            .get_or_create(&DeliveryLabels {
                outcome: label.into(),
            })
            .inc();
        if !outcome.succeeded {
            tracing::info!(subscription = %d.subscription_id, delivery = %d.id, attempt = d.attempt,
                code = ?outcome.response_code, error = ?outcome.error, next = label, "outbound delivery failed");
        }
        Settled {
            delivery: d,
            outcome,
            next,
        }
    }
}

/// What follows failed attempt number `attempt`: the schedule's next wait (±10% jitter), or the
/// receiver's `Retry-After` when it asks for longer; nothing once the schedule has run out.
pub fn after_failure(
    schedule: &[Duration],
    attempt: i64,
    retry_after_ms: Option<i64>,
    now: i64,
) -> Next {
    let Some(wait) = schedule.get((attempt.max(1) - 1) as usize) else {
        return Next::GiveUp;
    };
    let jittered = (wait.as_millis() as f64 * rand::thread_rng().gen_range(0.9..1.1)) as i64;
    Next::RetryAt(now + jittered.max(retry_after_ms.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_standard_webhooks() {
        let s = parse_schedule(&Limits::default().delivery_schedule).unwrap();
        let secs: Vec<u64> = s.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [5, 300, 1800, 7200, 18_000, 36_000, 36_000]);
        assert!(parse_schedule("5s,soon").is_err());
    }

    #[test]
    fn failures_follow_the_schedule_or_a_longer_retry_after() {
        let s = parse_schedule("5s,5m").unwrap();
        let at = |attempt, ra| match after_failure(&s, attempt, ra, 0) {
            Next::RetryAt(t) => t,
            other => panic!("{other:?}"),
        };
        assert!((4_500..=5_500).contains(&at(1, None)));
        assert!((270_000..=330_000).contains(&at(2, None)));
        // A receiver asking for longer gets its wait; a shorter ask does not shorten the schedule.
        assert_eq!(at(1, Some(60_000)), 60_000);
        assert!(at(1, Some(1_000)) >= 4_500);
        assert_eq!(after_failure(&s, 3, None, 0), Next::GiveUp);
    }
}

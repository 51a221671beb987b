//! The ingress context: what the webhook hot path needs and nothing else (the store, the
//! keyring, the per-integration ceiling, the per-address failure limiter, the decrypted-secret
//! cache, the webhook counters), and the pipeline itself, free of HTTP:
//!
//! an address over its failure limit is refused before anything is read → find the integration
//! (unknown: counted against the address) → verify the raw bytes with every active secret (failed:
//! counted) → the integration's ingress ceiling (only for senders that retry a 429) → normalise
//! (handshakes answered here) → one atomic insert, committed before the caller answers 2xx.
//! `http::webhooks` reads the body, calls [`Ingress::accept`] and turns the result into a
//! response, counting one outcome per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderMap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::Value;
use switchyard_common::crypto::Keyring;
use switchyard_common::error::Error;
use switchyard_common::otel;
use switchyard_common::telemetry::Metrics;

use crate::abuse::FailureLimiter;
use crate::group_commit::GroupCommit;
use crate::settings::Limits;
use crate::sources::{Delivery, Outcome, Refusal, Source};
use crate::store::{Integration, NewEvent, Store, Stored};

/// How long integrations and their decrypted secrets are reused. Retiring a secret, or changing
/// or deleting an integration, takes effect on every replica within this time (at once on the
/// replica that made the change).
pub const SECRETS_TTL: Duration = Duration::from_secs(10);

/// Integrations cached at most (the expired ones are dropped when there are more).
const CACHED_INTEGRATIONS: usize = 10_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub source: String,
    /// `accepted`, `duplicate`, `handshake`, `unauthorized`, `unknown_integration`, `throttled`,
    /// `too_large`, `invalid`, `unavailable`.
    pub outcome: String,
}

/// An integration's decrypted active secrets.
pub type Secrets = Arc<Vec<Vec<u8>>>;

/// Which integration a request is for.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A platform-wide app (shared Slack app, GitHub App) on one of its endpoints.
    Platform(Source, &'a str),
    /// `/webhooks/{source}/{id}`.
    Integration(&'a str, &'a str),
}

/// What an accepted request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// Stored (or already stored: `duplicate`) under this event id.
    Stored { event_id: String, duplicate: bool },
    /// A handshake or ping: this is the answer.
    Handshake(Value),
}

/// Why a request is refused; each is one `outcome` of the webhook counter.
#[derive(Debug)]
pub enum Rejected {
    /// Over the per-address failure limit.
    TooManyFailures,
    /// No such source or integration (counted against the address).
    Unknown(String),
    TooLarge(usize),
    /// The body could not be read, or is not what the sender sends.
    Invalid(String),
    Unverified(String),
    /// Over the integration's ingress ceiling.
    Throttled,
    /// The store is unreachable: the sender must retry.
    Unavailable(Error),
}

impl Rejected {
    pub fn outcome(&self) -> &'static str {
        match self {
            Rejected::TooManyFailures => "throttled",
            Rejected::Unknown(_) => "unknown_integration",
            Rejected::TooLarge(_) => "too_large",
            Rejected::Invalid(_) => "invalid",
            Rejected::Unverified(_) => "unauthorized",
            Rejected::Throttled => "throttled",
            Rejected::Unavailable(_) => "unavailable",
        }
    }

    pub fn into_error(self) -> Error {
        match self {
            Rejected::TooManyFailures => Error::TooManyRequests {
                detail: "too many failed verifications from this address".into(),
                retry_after: 60,
            },
            Rejected::Unknown(what) => Error::not_found(what),
            Rejected::TooLarge(limit) => {
                Error::TooLarge(format!("webhook bodies are limited to {limit} bytes"))
            }
            Rejected::Invalid(why) => Error::BadRequest(why),
            Rejected::Unverified(why) => {
                Error::Unauthorized(format!("webhook verification failed: {why}"))
            }
            Rejected::Throttled => Error::TooManyRequests {
                detail: "this integration is over its ingress rate; retry shortly".into(),
                retry_after: 1,
            },
            Rejected::Unavailable(e) => {
                tracing::error!(error = %e, "webhook storage unavailable");
                Error::Unavailable("the event store is unavailable; retry later".into())
            }
        }
    }
}

#[derive(Clone)]
pub struct Ingress {
    store: Store,
    keyring: Keyring,
    pub limits: Limits,
    /// Per-integration ingress ceiling.
    ceiling: Arc<DefaultKeyedRateLimiter<String>>,
    /// Failed verifications and unknown-integration probes per client address.
    pub unverified: Arc<FailureLimiter>,
    secrets: Arc<Mutex<HashMap<String, (Instant, Secrets)>>>,
    /// Integrations by id (`platform:<source>` for the platform's), as the last read found them.
    integrations: Arc<Mutex<HashMap<String, (Instant, Integration)>>>,
    webhooks: Family<WebhookLabels, Counter>,
    /// Stores verified deliveries many to a transaction.
    writer: Arc<GroupCommit>,
}

impl Ingress {
    pub fn new(store: Store, keyring: Keyring, limits: Limits, metrics: &Metrics) -> Self {
        let webhooks = Family::<WebhookLabels, Counter>::default();
        metrics.register(
            "webhooks",
            "Webhook deliveries by source and outcome",
            webhooks.clone(),
        );
        let per_sec = NonZeroU32::new(limits.ingress_per_second.max(1)).expect("non-zero");
        let burst = per_sec.saturating_mul(NonZeroU32::new(2).expect("2"));
        Self {
            keyring,
            ceiling: Arc::new(RateLimiter::keyed(
                Quota::per_second(per_sec).allow_burst(burst),
            )),
            unverified: Arc::new(FailureLimiter::new(limits.unverified_per_minute)),
            limits,
            secrets: Arc::default(),
            integrations: Arc::default(),
            webhooks,
            writer: Arc::new(GroupCommit::new(store.clone())),
            store,
        }
    }

    /// How many deliveries wait for the event writer (dispatch yields to them).
    pub fn pressure(&self) -> Arc<crate::group_commit::Pressure> {
        self.writer.pressure()
    }

    pub fn count(&self, source: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                source: source.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Refuses an address already over its failure limit, before its body is read.
    pub fn admit(&self, ip: Option<IpAddr>) -> Result<(), Rejected> {
        match ip {
            Some(ip) if self.unverified.blocked(ip) => Err(Rejected::TooManyFailures),
            _ => Ok(()),
        }
    }

    /// Counts a failure that proved nothing against its address: `err`, or 429 once over.
    fn fail(&self, ip: Option<IpAddr>, err: Rejected) -> Rejected {
        match ip {
            Some(ip) if self.unverified.record(ip) => Rejected::TooManyFailures,
            _ => err,
        }
    }

    /// The integration a request is for (reused for [`SECRETS_TTL`]; an unknown one is read
    /// every time, and its probes counted against the address).
    pub async fn find(
        &self,
        target: Target<'_>,
        ip: Option<IpAddr>,
    ) -> Result<Integration, Rejected> {
        let key = match target {
            Target::Platform(source, _) => format!("platform:{}", source.as_str()),
            Target::Integration(_, id) => id.to_owned(),
        };
        if let Some((at, i)) = self.integrations.lock().expect("cache poisoned").get(&key)
            && at.elapsed() < SECRETS_TTL
            && match target {
                Target::Integration(source, _) => i.source.as_str() == source,
                Target::Platform(..) => true,
            }
        {
            return Ok(i.clone());
        }
        let found = self.read(target, ip).await?;
        let mut cache = self.integrations.lock().expect("cache poisoned");
        if cache.len() >= CACHED_INTEGRATIONS {
            cache.retain(|_, (at, _)| at.elapsed() < SECRETS_TTL);
        }
        cache.insert(key, (Instant::now(), found.clone()));
        Ok(found)
    }

    async fn read(&self, target: Target<'_>, ip: Option<IpAddr>) -> Result<Integration, Rejected> {
        match target {
            Target::Platform(source, _) => match self.store.platform_integration(source).await {
                Ok(Some(i)) => Ok(i),
                Ok(None) => Err(Rejected::Unknown(format!(
                    "the platform {} integration is not configured",
                    source.as_str()
                ))),
                Err(e) => Err(Rejected::Unavailable(e)),
            },
            Target::Integration(source, id) => {
                let Some(src) = Source::parse(source) else {
                    let err = Rejected::Unknown(format!("webhook source {source}"));
                    return Err(self.fail(ip, err));
                };
                match self.store.integration_row(id).await {
                    Ok(Some(i)) if i.source == src => Ok(i),
                    Ok(_) => Err(self.fail(ip, Rejected::Unknown(format!("integration {id}")))),
                    Err(e) => Err(Rejected::Unavailable(e)),
                }
            }
        }
    }

    /// Verifies, normalises and stores one delivery for `integration`; `Ok` only after the commit.
    pub async fn accept(
        &self,
        integration: &Integration,
        endpoint: &str,
        headers: &HeaderMap,
        body: &[u8],
        ip: Option<IpAddr>,
    ) -> Result<Accepted, Rejected> {
        let source = integration.source;
        let delivery = Delivery {
            settings: &integration.settings,
            endpoint,
            ..Delivery::new(headers, body)
        };
        let secrets = self
            .secrets_of(&integration.id)
            .await
            .map_err(Rejected::Unavailable)?;
        let unverified = |why: String| {
            tracing::warn!(integration = %integration.id, source = source.as_str(), reason = %why, "webhook verification failed");
            self.fail(ip, Rejected::Unverified(why))
        };
        if let Err(e) = source.verify(&delivery, &secrets) {
            return Err(unverified(e.to_string()));
        }
        if source.retries_429() && self.ceiling.check_key(&integration.id).is_err() {
            return Err(Rejected::Throttled);
        }
        let env = match source.normalise(&delivery) {
            Ok(Outcome::Handshake(answer)) => return Ok(Accepted::Handshake(answer)),
            Ok(Outcome::Event(env)) => env,
            Err(Refusal::Unverified(e)) => return Err(unverified(e.to_string())),
            Err(Refusal::Invalid(why)) => return Err(Rejected::Invalid(why)),
        };
        let org = integration.org_id.as_deref();
        let delivery_id = env.delivery_id.clone();
        // Dispatch continues the trace from here: the stored context is this span's.
        let (mut span, stored) =
            otel::Span::child("orchestrator", "inbox.store", otel::SpanKind::Internal);
        span.attr("switchyard.source", source.as_str());
        span.attr_str("switchyard.integration", &integration.id);
        let event = NewEvent {
            integration_id: integration.id.clone(),
            org: org.map(str::to_owned),
            env,
            traceparent: Some(stored.header()),
        };
        let written = self.writer.store(event).await;
        match &written {
            Ok(Stored::New(id) | Stored::Duplicate(id)) => span.attr_str("switchyard.event", id),
            Err(e) => span.error(e.to_string()),
        }
        span.end();
        match written {
            Ok(Stored::New(id)) => {
                tracing::info!(event = %id, integration = %integration.id, delivery = %delivery_id, "event stored");
                Ok(Accepted::Stored {
                    event_id: id,
                    duplicate: false,
                })
            }
            Ok(Stored::Duplicate(id)) => {
                tracing::info!(event = %id, delivery = %delivery_id, "duplicate delivery acknowledged");
                Ok(Accepted::Stored {
                    event_id: id,
                    duplicate: true,
                })
            }
            Err(e) => Err(Rejected::Unavailable(e)),
        }
    }

    /// Active secrets of an integration, decrypted, cached briefly (the hot path must not decrypt
    /// per request).
    pub async fn secrets_of(&self, integration: &str) -> Result<Secrets, Error> {
        if let Some((at, s)) = self
            .secrets
            .lock()
            .expect("cache poisoned")
            .get(integration)
            && at.elapsed() < SECRETS_TTL
        {
            return Ok(s.clone());
        }
        let s = Arc::new(
            self.store
                .active_secrets(&self.keyring, integration)
                .await?,
        );
        self.secrets
            .lock()
            .expect("cache poisoned")
            .insert(integration.to_owned(), (Instant::now(), s.clone()));
        Ok(s)
    }

    /// Forgets a cached integration and its secrets after a change on this replica.
    pub fn forget(&self, integration: &str) {
        self.secrets
            .lock()
            .expect("cache poisoned")
            .remove(integration);
        // A platform integration is cached by its source: forget those too (they are few).
        self.integrations
            .lock()
            .expect("cache poisoned")
            .retain(|key, (_, i)| key != integration && i.id != integration);
    }
}

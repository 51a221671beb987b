//! Shared state of the orchestrator.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use switchyard_common::auth::{ServiceKey, hash_token};
use switchyard_common::error::Error;
use switchyard_common::http::{AuthState, Caller};
use switchyard_common::telemetry::Metrics;

use crate::settings::Limits;
use crate::store::Store;
use switchyard_common::clients::{CallError, ConfigClient, RunnerClient};
use switchyard_common::crypto::Keyring;

/// How long a resolved token or decrypted secret set is reused. Revoking a token or retiring a
/// secret takes effect on every replica within this time.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub source: String,
    /// `accepted`, `duplicate`, `handshake`, `unauthorized`, `throttled`, `too_large`, `invalid`,
    /// `unavailable`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispatchLabels {
    /// `dispatched`, `retrying`, `throttled`, `unrouted`, `dead_lettered`.
    pub outcome: String,
}

/// An integration's decrypted active secrets.
pub type Secrets = Arc<Vec<Vec<u8>>>;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub keyring: Keyring,
    pub admin_token: Option<Arc<str>>,
    pub service_key: ServiceKey,
    pub config: ConfigClient,
    pub runner: RunnerClient,
    pub limits: Limits,
    pub metrics: Metrics,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub dispatches: Family<DispatchLabels, Counter>,
    /// Events left unrouted because their identifiers matched in several organisations: a rising
    /// count means two tenants claim the same identifiers (see the events' `last_error`).
    pub routing_ambiguous: Counter,
    /// Per-integration ingress ceiling.
    pub ingress: Arc<DefaultKeyedRateLimiter<String>>,
    /// Failed verifications and unknown-integration probes per client address.
    pub unverified: Arc<crate::abuse::FailureLimiter>,
    /// The tenant namespace's client; `None` without a cluster (dev mode).
    pub cluster: Option<crate::k8s::Cluster>,
    /// The config-service URL written into team Secrets (as pods reach it).
    pub pod_config_service_url: String,
    pub failpoints: crate::provision::FailPoints,
    pub team_locks: crate::provision::TeamLocks,
    pub provisioning_tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    tokens: Arc<Mutex<HashMap<String, (Instant, Caller)>>>,
    secrets: Arc<Mutex<HashMap<String, (Instant, Secrets)>>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        store: Store,
        keyring: Keyring,
        admin_token: Option<String>,
        service_key: ServiceKey,
        config_service_url: &str,
        agent_runner_url: &str,
        limits: Limits,
    ) -> Self {
        let metrics = Metrics::new("switchyard_orchestrator");
        let webhooks = Family::<WebhookLabels, Counter>::default();
        let dispatches = Family::<DispatchLabels, Counter>::default();
        metrics.register(
            "webhooks",
            "Webhook deliveries by source and outcome",
            webhooks.clone(),
        );
        metrics.register(
            "dispatches",
            "Dispatch attempts by outcome",
            dispatches.clone(),
        );
        let routing_ambiguous = Counter::default();
        metrics.register(
            "routing_ambiguous",
            "Events unrouted because their identifiers matched in several organisations",
            routing_ambiguous.clone(),
        );
        let per_sec = NonZeroU32::new(limits.ingress_per_second.max(1)).expect("non-zero");
        Self {
            config: ConfigClient::new(config_service_url, service_key.clone(), "orchestrator"),
            runner: RunnerClient::new(agent_runner_url, service_key.clone()),
            store,
            keyring,
            admin_token: admin_token.map(Arc::from),
            service_key,
            metrics,
            webhooks,
            dispatches,
            routing_ambiguous,
            ingress: Arc::new(RateLimiter::keyed(
                Quota::per_second(per_sec)
                    .allow_burst(per_sec.saturating_mul(NonZeroU32::new(2).expect("2"))),
            )),
            unverified: Arc::new(crate::abuse::FailureLimiter::new(
                limits.unverified_per_minute,
            )),
            limits,
            cluster: None,
            pod_config_service_url: config_service_url.to_owned(),
            failpoints: Default::default(),
            team_locks: Default::default(),
            provisioning_tasks: Arc::default(),
            tokens: Arc::default(),
            secrets: Arc::default(),
        }
    }

    /// Provision into this cluster namespace.
    pub fn with_cluster(mut self, cluster: crate::k8s::Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Active secrets of an integration, decrypted, cached briefly (the hot path must not decrypt
    /// per request).
    pub async fn secrets_of(&self, integration: &str) -> Result<Secrets, Error> {
        if let Some((at, s)) = self
            .secrets
            .lock()
            .expect("cache poisoned")
            .get(integration)
            && at.elapsed() < CACHE_TTL
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

    /// Forgets cached secrets of an integration after a change on this replica.
    pub fn forget_secrets(&self, integration: &str) {
        self.secrets
            .lock()
            .expect("cache poisoned")
            .remove(integration);
    }

    pub fn count_webhook(&self, source: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                source: source.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

impl AuthState for AppState {
    const AUDIENCE: &'static str = "orchestrator";

    fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    fn service_key(&self) -> &ServiceKey {
        &self.service_key
    }

    /// Asks the config-service, caching the answer (keyed by the token's hash) briefly.
    async fn resolve_token(&self, token: &str) -> Result<Caller, Error> {
        let key = hash_token(token);
        if let Some((at, c)) = self.tokens.lock().expect("cache poisoned").get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(c.clone());
        }
        match self.config.introspect(token).await {
            Ok(Some(c)) => {
                let mut cache = self.tokens.lock().expect("cache poisoned");
                if cache.len() > 10_000 {
                    cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
                }
                cache.insert(key, (Instant::now(), c.clone()));
                Ok(c)
            }
            Ok(None) => Err(Error::Unauthorized("the token is not valid".into())),
            Err(e @ (CallError::Unavailable(_) | CallError::Overloaded { .. })) => {
                tracing::warn!(error = %e, "config-service unreachable for token introspection");
                Err(Error::Unavailable(
                    "the config-service is unreachable; retry later".into(),
                ))
            }
            Err(e) => Err(Error::Internal(anyhow::anyhow!(
                "token introspection failed: {e}"
            ))),
        }
    }
}

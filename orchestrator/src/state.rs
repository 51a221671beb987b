//! The orchestrator's application state: the narrow contexts each part works with, built once.
//!
//! - [`Ingress`]: the webhook hot path (store, keyring, limiters, secret cache, counters);
//! - [`Provisioner`]: onboarding and offboarding (store, config client, cluster, team locks);
//! - the dispatcher is built from the same parts by [`AppState::dispatcher`] when serving;
//! - what the HTTP API needs besides: the store, the keyring, the clients and authentication.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard_common::auth::{ServiceKey, hash_token};
use switchyard_common::clients::{CallError, ConfigClient, RunnerClient};
use switchyard_common::crypto::Keyring;
use switchyard_common::db::{Db, redact_url};
use switchyard_common::error::Error;
use switchyard_common::http::{AuthState, Caller};
use switchyard_common::telemetry::Metrics;

use crate::dispatch::Dispatcher;
use crate::ingress::Ingress;
use crate::k8s::Cluster;
use crate::provision::Provisioner;
use crate::settings::{Limits, Settings};
use crate::store::Store;

/// How long a resolved token is reused. Revoking a token takes effect on every replica within
/// this time.
pub const TOKEN_TTL: Duration = Duration::from_secs(10);

/// Cloned for every request (axum hands each handler and middleware its own copy), so a clone
/// is one reference count: the parts behind it are many, and some (the keyring, the clients'
/// addresses) allocate when cloned.
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

#[derive(Clone)]
pub struct Parts {
    pub store: Store,
    pub keyring: Keyring,
    pub config: ConfigClient,
    pub runner: RunnerClient,
    pub limits: Limits,
    pub metrics: Metrics,
    pub ingress: Ingress,
    pub provisioner: Provisioner,
    admin_token: Option<Arc<str>>,
    service_key: ServiceKey,
    tokens: Arc<Mutex<HashMap<String, (Instant, Caller)>>>,
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
        let config = ConfigClient::new(config_service_url, service_key.clone(), "orchestrator")
            .observed(metrics.calls());
        let provisioner = Provisioner::new(store.clone(), config.clone(), config_service_url);
        provisioner.register(&metrics);
        Self(Arc::new(Parts {
            ingress: Ingress::new(store.clone(), keyring.clone(), limits.clone(), &metrics),
            provisioner,
            runner: RunnerClient::new(agent_runner_url, service_key.clone())
                .observed(metrics.calls()),
            config,
            store,
            keyring,
            admin_token: admin_token.map(Arc::from),
            service_key,
            metrics,
            limits,
            tokens: Arc::default(),
        }))
    }

    /// The state `switchyard orchestrator` runs with: connects to and migrates the database,
    /// reads the keys, and finds the cluster as `--kubernetes` says.
    pub async fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        let key = s.secrets.service_key(Some("orchestrator"), &[])?;
        let keyring = s.secrets.keyring()?;
        let admin = s.secrets.admin_token()?;
        let db = Db::connect(&s.database_url, s.db_max_connections)
            .await
            .with_context(|| format!("connecting to {}", redact_url(&s.database_url)))?;
        db.migrate().await.context("applying migrations")?;
        crate::outbound::parse_schedule(&s.limits.delivery_schedule).map_err(anyhow::Error::msg)?;
        let mut state = Self::new(
            Store::new(db),
            keyring,
            admin,
            key,
            &s.config_service_url,
            &s.agent_runner_url,
            s.limits.clone(),
        );
        if let Some(url) = &s.pod_config_service_url {
            Arc::make_mut(&mut state.0)
                .provisioner
                .pod_config_service_url = url.clone();
        }
        if s.kubernetes != "none" {
            match kube::Client::try_default().await {
                Ok(client) => {
                    tracing::info!(namespace = %s.tenant_namespace, "provisioning into Kubernetes");
                    state = state.with_cluster(Cluster::new(client, &s.tenant_namespace));
                }
                Err(e) if s.kubernetes == "auto" => {
                    tracing::warn!(error = %e, "no Kubernetes configuration found: Kubernetes steps will be skipped");
                }
                Err(e) => return Err(anyhow::anyhow!("--kubernetes kubeconfig: {e}")),
            }
        }
        Ok(state)
    }

    /// Provision into this cluster namespace.
    pub fn with_cluster(mut self, cluster: Cluster) -> Self {
        Arc::make_mut(&mut self.0).provisioner.cluster = Some(cluster);
        self
    }

    /// The outbound delivery worker over this state's store, keyring and config-service client;
    /// fails when `--delivery-schedule` does not parse.
    pub fn outbound(&self) -> anyhow::Result<Arc<crate::outbound::Outbound>> {
        crate::outbound::Outbound::new(
            self.store.clone(),
            self.keyring.clone(),
            self.config.clone(),
            self.limits.clone(),
            &self.metrics,
        )
    }

    /// A dispatcher over this state's store and clients, its counters in this state's registry.
    pub fn dispatcher(&self) -> Arc<Dispatcher> {
        Dispatcher::new(
            self.store.clone(),
            self.config.clone(),
            self.runner.clone(),
            self.limits.clone(),
            self.ingress.pressure(),
            &self.metrics,
        )
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
            && at.elapsed() < TOKEN_TTL
        {
            return Ok(c.clone());
        }
        match self.config.introspect(token).await {
            Ok(Some(c)) => {
                let mut cache = self.tokens.lock().expect("cache poisoned");
                if cache.len() > 10_000 {
                    cache.retain(|_, (at, _)| at.elapsed() < TOKEN_TTL);
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

//! Shared state handed to every handler.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use switchyard_common::auth::ServiceKey;
use switchyard_common::crypto::Keyring;
use switchyard_common::telemetry::Metrics;

use switchyard_common::error::Error;
use switchyard_common::http::Caller;

use crate::store::Store;

/// Cloned for every request (axum hands each handler and middleware its own copy), so a clone
/// is one reference count, not a copy of each part.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Parts>);

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

#[derive(Debug)]
pub struct Parts {
    pub store: Store,
    /// The platform admin token; `None` disables platform-admin access (org admin tokens still
    /// work). Kept as given and compared in constant time.
    pub admin_token: Option<Arc<str>>,
    /// Verifies service JWTs on `/api/v1/internal/*`.
    pub service_key: ServiceKey,
    /// Seals and opens the org secrets store.
    pub keyring: Keyring,
    pub metrics: Metrics,
    /// Routing lookups by outcome (`matched`, `unrouted`, `ambiguous`): a rising `ambiguous`
    /// means two organisations claim the same identifiers.
    pub lookups: Family<LookupLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    pub outcome: &'static str,
}

impl AppState {
    /// The state `switchyard config-service` runs with: connects to and migrates the database,
    /// reads the keys. It calls nobody: it only verifies the orchestrator's and agent-runner's
    /// calls.
    pub async fn from_settings(s: &crate::settings::Settings) -> anyhow::Result<Self> {
        use anyhow::Context;
        let service_key = s
            .secrets
            .service_key(None, &["orchestrator", "agent-runner"])?;
        let admin_token = s.secrets.admin_token()?;
        if admin_token.is_none() {
            tracing::warn!(
                "no platform admin token configured: only org admin and team tokens work"
            );
        }
        let db = switchyard_common::db::Db::connect(&s.database_url, s.db_max_connections)
            .await
            .with_context(|| {
                format!(
                    "connecting to {}",
                    switchyard_common::db::redact_url(&s.database_url)
                )
            })?;
        db.migrate().await.context("applying migrations")?;
        let keyring = s.secrets.keyring()?;
        Ok(Self::new(Store::new(db), admin_token, service_key, keyring))
    }

    pub fn new(
        store: Store,
        admin_token: Option<String>,
        service_key: ServiceKey,
        keyring: Keyring,
    ) -> Self {
        let metrics = Metrics::new("switchyard_config_service");
        let lookups = Family::<LookupLabels, Counter>::default();
        metrics.register(
            "routing_lookups",
            "Routing lookups by outcome",
            lookups.clone(),
        );
        Self(Arc::new(Parts {
            store,
            admin_token: admin_token.map(Arc::from),
            service_key,
            keyring,
            metrics,
            lookups,
        }))
    }
}

impl switchyard_common::http::AuthState for AppState {
    const AUDIENCE: &'static str = "config-service";

    fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    fn service_key(&self) -> &ServiceKey {
        &self.service_key
    }

    async fn resolve_token(&self, token: &str) -> Result<Caller, Error> {
        let auth = self
            .store
            .authenticate(&switchyard_common::auth::hash_token(token))
            .await?;
        caller_of(auth)
    }
}

/// The caller a stored token describes. Fails closed: a kind this build does not know, or a shape
/// that does not fit the kind, grants nothing.
pub fn caller_of(auth: crate::store::TokenAuth) -> Result<Caller, Error> {
    match (auth.kind.as_str(), auth.node_id) {
        ("team", Some(node_id)) => Ok(Caller::Team {
            org_id: auth.org_id,
            node_id,
            token_id: auth.id,
            subject: auth.subject,
        }),
        ("org_admin", None) => Ok(Caller::OrgAdmin {
            org_id: auth.org_id,
            token_id: auth.id,
            subject: auth.subject,
        }),
        (kind, _) => {
            tracing::error!(token = %auth.id, kind, "token of an unknown kind refused");
            Err(Error::Unauthorized("the token is not valid".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TokenAuth;

    #[test]
    fn tokens_of_unknown_kinds_grant_nothing() {
        let auth = |kind: &str, node: Option<&str>| TokenAuth {
            id: "t".into(),
            org_id: "acme".into(),
            node_id: node.map(str::to_owned),
            kind: kind.into(),
            subject: "s".into(),
        };
        assert!(matches!(
            caller_of(auth("org_admin", None)),
            Ok(Caller::OrgAdmin { .. })
        ));
        assert!(matches!(
            caller_of(auth("team", Some("n"))),
            Ok(Caller::Team { .. })
        ));
        for (kind, node) in [
            ("platform_admin", None),
            ("admin", None),
            ("team", None),
            ("org_admin", Some("n")),
        ] {
            assert!(
                matches!(caller_of(auth(kind, node)), Err(Error::Unauthorized(_))),
                "{kind}"
            );
        }
    }
}

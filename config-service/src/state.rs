//! Shared state handed to every handler.

use std::sync::Arc;

use switchyard_common::auth::ServiceKey;
use switchyard_common::telemetry::Metrics;

use crate::store::Store;

#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    /// The platform admin token; `None` disables platform-admin access (org admin tokens still
    /// work). Kept as given and compared in constant time.
    pub admin_token: Option<Arc<str>>,
    /// Verifies service JWTs on `/api/v1/internal/*`.
    pub service_key: ServiceKey,
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(store: Store, admin_token: Option<String>, service_key: ServiceKey) -> Self {
        Self {
            store,
            admin_token: admin_token.map(Arc::from),
            service_key,
            metrics: Metrics::new("switchyard_config_service"),
        }
    }
}

//! Switchyard's orchestrator: the front door for every incident signal, and the control plane.
//!
//! # Layout
//! - [`sources`]: per-sender signature verification and payload normalisation.
//! - [`http`]: webhooks (the hot path), integrations and the events API.
//! - [`store`]: integrations and the durable event inbox (secrets sealed with
//!   `switchyard_common::crypto`).
//! - [`dispatch`]: claims events and triggers the agent-runner.
//! - [`audit`]: relays control actions from the outbox to the config-service's audit log.

pub mod abuse;
pub mod audit;
pub mod dispatch;
pub mod http;
pub mod k8s;
pub mod openapi;
pub mod provision;
pub mod reconcile;
pub mod settings;
pub mod sources;
pub mod state;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub use http::app;
pub use state::AppState;
use tokio::net::TcpListener;

/// Serves the HTTP API and runs the dispatcher, the reconciler and the retention purge until
/// `shutdown`; then stops accepting, finishes in-flight requests and provisioning runs (up to a
/// minute), and releases claimed events.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    database_url: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dispatcher = dispatch::Dispatcher::new(state.clone());
    let dispatching = tokio::spawn(dispatcher.run(database_url, stop_rx.clone()));
    let reconciling = tokio::spawn(reconcile::run(
        state.clone(),
        Duration::from_secs(state.limits.reconcile_interval_seconds),
        stop_rx.clone(),
    ));
    let auditing = tokio::spawn(audit::relay(
        state.store.clone(),
        state.config.clone(),
        stop_rx.clone(),
    ));
    let purge_state = state.clone();
    let mut purge_stop = stop_rx.clone();
    let purging = tokio::spawn(async move {
        loop {
            let before = switchyard_common::time::now_ms()
                - i64::from(purge_state.limits.retention_days.max(1)) * 86_400_000;
            let system = switchyard_common::http::Actor::system("system:retention");
            match purge_state.store.purge(&system, before).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "retention purge"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention purge failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = purge_stop.changed() => return,
            }
        }
    });
    let runs = state.clone();
    let result = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    // Provisioning runs in flight hold compensation state in memory: give them time to finish.
    if tokio::time::timeout(Duration::from_secs(60), runs.wait_for_runs())
        .await
        .is_err()
    {
        tracing::warn!(
            "provisioning runs still in flight at shutdown; their steps show where they stopped"
        );
    }
    let _ = stop_tx.send(true);
    let _ = dispatching.await;
    let _ = reconciling.await;
    let _ = purging.await;
    let _ = auditing.await;
    result
}

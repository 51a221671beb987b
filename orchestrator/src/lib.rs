//! Switchyard's orchestrator: the front door for every incident signal, and the control plane.
//!
//! # Layout
//! | folder / file | responsibility |
//! |---|---|
//! | [`sources`] | one module per sender: its verification, normalisation and reply target |
//! | [`ingress`] | the webhook pipeline and its context (limiters, secret cache, counters) |
//! | [`http`] | HTTP only: webhooks, integrations, events, provisioning, health |
//! | [`store`] | one `impl Store` slice per area; the only place with SQL or a backend |
//! | [`incidents`] | the teams' correlation rules and what a signal means for its incident's runs |
//! | [`dispatch`] | claims events, decides their team and triggers the agent-runner |
//! | [`provision`] | onboarding and offboarding runs with rollback |
//! | [`reconcile`] | keeps team CronJobs as their config says (one leader among replicas) |
//! | [`k8s`] | the tenant namespace's client and the objects Switchyard manages |
//! | [`audit`] | relays control actions from the outbox to the config-service's audit log |
//! | [`outbound`] | delivers Switchyard's own events to subscriptions, signed, with retries |
//! | [`state`] | the application state: the contexts above, built once |

pub mod abuse;
pub mod audit;
pub mod depth;
pub mod dispatch;
pub mod group_commit;
pub mod http;
pub mod incidents;
pub mod ingress;
pub mod k8s;
pub mod openapi;
pub mod outbound;
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

/// Runs the orchestrator as `switchyard orchestrator` does: [`AppState::from_settings`], then
/// [`serve`] until `shutdown`.
pub async fn run(
    settings: settings::Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::from_settings(&settings).await?;
    tracing::info!(addr = %listener.local_addr()?, database = state.store.backend().name(), "orchestrator listening");
    serve(listener, state, shutdown).await?;
    Ok(())
}

/// Serves the HTTP API and runs the dispatcher, the reconciler, the audit relay, outbound delivery,
/// the inbox's depth gauges and the retention purge until `shutdown`; then stops accepting, finishes in-flight requests and provisioning runs
/// (up to a minute), and releases claimed events.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dispatching = tokio::spawn(state.dispatcher().run(stop_rx.clone()));
    let reconciling = tokio::spawn(reconcile::run(
        state.provisioner.clone(),
        state.metrics.clone(),
        Duration::from_secs(state.limits.reconcile_interval_seconds),
        stop_rx.clone(),
    ));
    let auditing = tokio::spawn(audit::relay(
        state.store.clone(),
        state.config.clone(),
        stop_rx.clone(),
    ));
    let delivering = match state.outbound() {
        Ok(o) => Some(tokio::spawn(o.run(stop_rx.clone()))),
        Err(e) => {
            tracing::error!(error = %e, "outbound delivery is off: its settings are invalid");
            None
        }
    };
    let sampling = tokio::spawn(depth::run(
        state.store.clone(),
        depth::InboxGauges::new(&state.metrics),
        stop_rx.clone(),
    ));
    let purging = tokio::spawn(purge(
        state.store.clone(),
        state.limits.retention_days,
        stop_rx.clone(),
    ));
    let runs = state.provisioner.clone();
    let result = axum::serve(
        switchyard_common::http::no_delay(listener),
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
    let _ = sampling.await;
    let _ = auditing.await;
    if let Some(d) = delivering {
        let _ = d.await;
    }
    result
}

/// Deletes finished events past the retention, hourly.
async fn purge(
    store: store::Store,
    retention_days: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let before =
            switchyard_common::time::now_ms() - i64::from(retention_days.max(1)) * 86_400_000;
        let system = switchyard_common::http::Actor::system("system:retention");
        match store.purge(&system, before).await {
            Ok(n) if n > 0 => tracing::info!(purged = n, "retention purge"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention purge failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.changed() => return,
        }
    }
}

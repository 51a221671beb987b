//! The inbox's depth as gauges, sampled from the database every 15 seconds: events by status
//! (those still owed a dispatch, and the unrouted and dead-lettered ones kept for replay) and the
//! age of the oldest event still owed a dispatch. Every replica samples the same table, so
//! dashboards and alerts take `max` across instances.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use switchyard_common::error::Result;
use switchyard_common::telemetry::Metrics;
use switchyard_common::time::now_ms;
use tokio::sync::watch;

use crate::store::{Status, Store};

const EVERY: Duration = Duration::from_secs(15);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone)]
pub struct InboxGauges {
    events: Family<StatusLabels, Gauge>,
    oldest_pending: Gauge<f64, AtomicU64>,
}

impl InboxGauges {
    pub fn new(metrics: &Metrics) -> Self {
        let g = Self {
            events: Family::default(),
            oldest_pending: Gauge::default(),
        };
        metrics.register(
            "inbox_events",
            "Events in the inbox by status, the dispatched ones left out (sampled every 15 s)",
            g.events.clone(),
        );
        metrics.register(
            "inbox_oldest_pending_age_seconds",
            "Age of the oldest event still owed a dispatch; 0 when none is (sampled every 15 s)",
            g.oldest_pending.clone(),
        );
        g
    }

    /// Reads the inbox once and sets the gauges (a status with no event reads 0).
    pub async fn sample(&self, store: &Store) -> Result<()> {
        let rows = store.inbox_depth().await?;
        let now = now_ms();
        let mut oldest: Option<i64> = None;
        for status in Status::ALL {
            if status == Status::Dispatched {
                continue;
            }
            let row = rows.iter().find(|(s, _, _)| s == status.as_str());
            let (count, first) = row.map_or((0, None), |(_, n, at)| (*n, Some(*at)));
            self.events
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(count);
            if status.is_pending()
                && let Some(at) = first
            {
                oldest = Some(oldest.map_or(at, |o: i64| o.min(at)));
            }
        }
        let age = oldest.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
        self.oldest_pending.set(age);
        Ok(())
    }
}

/// Samples until `stop` turns true.
pub async fn run(store: Store, gauges: InboxGauges, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = gauges.sample(&store).await {
            tracing::warn!(error = %e, "could not sample the inbox's depth");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

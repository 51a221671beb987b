//! Relays the orchestrator's control actions to the config-service's hash-chained audit log.
//!
//! Each action writes its entry to `or_audit_outbox` in the same transaction as the change, so no
//! committed action goes unaudited and no rolled-back one is audited. This task appends waiting
//! entries to the log (`POST /api/v1/internal/audit`) and deletes them once appended; the log
//! skips an entry it already has (by outbox id), so a relay that dies between the two, or two
//! replicas relaying at once, append each entry once.

use std::time::Duration;

use switchyard_common::clients::ConfigClient;
use tokio::sync::watch;

use crate::store::Store;

/// Entries relayed per call.
const BATCH: i64 = 100;
/// How often an idle relay looks for new entries.
const IDLE: Duration = Duration::from_millis(500);

/// Runs until `shutdown` turns true.
pub async fn relay(store: Store, config: ConfigClient, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = IDLE;
    loop {
        let wait = match store.pending_audit(BATCH).await {
            Ok(batch) if batch.is_empty() => IDLE,
            Ok(batch) => match config.append_audit(&batch).await {
                Ok(()) => {
                    let ids: Vec<String> = batch.into_iter().map(|e| e.source_id).collect();
                    match store.relayed_audit(&ids).await {
                        Ok(()) => {
                            backoff = IDLE;
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not clear relayed audit entries; they are relayed again (and skipped)");
                            IDLE
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, waiting = ?backoff, "the audit log is unreachable; entries wait in the outbox");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "reading the audit outbox failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

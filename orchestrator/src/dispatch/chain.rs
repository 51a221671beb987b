//! One correlation key's claimed events, dispatched in arrival order by one task (ADR 0014).
//!
//! What the events' decisions write (their correlations and settlements) goes into one open
//! transaction, a *segment*, committed when an event needs the agent-runner (no transaction or
//! team lock is held across a call to another service), when an event must wait (the rest of the
//! key's events are put back, to follow it), after [`SEGMENT`] events, and at the end. A storm on
//! one incident is then a few statements per signal and one commit per segment, instead of two
//! commits per signal.
//!
//! Locks are taken in one order: a team's turn before the transaction, and a segment holding a
//! transaction commits before it waits for another team's turn. On SQLite a segment holds the
//! single writer, so no step in it waits for anything another writer holds.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_common::otel;
use switchyard_common::trace::TraceContext;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit};

use super::Dispatcher;
use super::settler::Settler;
use super::starter::Starter;
use crate::store::{Batch, Claimed, Settlement, Status, Store};

/// Events whose writes one segment commits at most.
const SEGMENT: usize = 64;

/// The open segment of a key's events (see the module's description).
pub(super) struct Segment {
    worker: String,
    /// The open transaction, with the dispatcher's leave to hold it (see `Dispatcher::segments`).
    batch: Option<(Batch, OwnedSemaphorePermit)>,
    /// Signals that joined an incident, settled together when the segment commits.
    joined: Vec<(String, Settlement)>,
    /// The team turn held, with its team, while the transaction may hold the team's lock.
    turn: Option<((String, String), OwnedMutexGuard<()>)>,
    /// Events whose settlement is in the open transaction.
    settled: Vec<String>,
    /// A statement or a commit failed: the transaction is gone with what it held.
    pub(super) failed: Option<String>,
}

impl Segment {
    fn new(worker: &str) -> Self {
        Self {
            worker: worker.to_owned(),
            batch: None,
            joined: Vec::new(),
            turn: None,
            settled: Vec::new(),
            failed: None,
        }
    }

    /// The open transaction, begun if none is (once the dispatcher lets one more chain hold
    /// a transaction: see `Dispatcher::segments`).
    pub(super) async fn open(&mut self, d: &Dispatcher) -> Result<&mut Batch, String> {
        if self.batch.is_none() {
            let permit = match d.segments.clone().acquire_owned().await {
                Ok(p) => p,
                Err(e) => return Err(self.fail(e)),
            };
            match d.store.batch().await {
                Ok(b) => self.batch = Some((b, permit)),
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(&mut self.batch.as_mut().expect("just opened").0)
    }

    /// Commits what the segment wrote and lets go of its team turn.
    pub(super) async fn commit(&mut self, store: &Store) -> Result<(), String> {
        if let Some((mut b, _permit)) = self.batch.take() {
            let joined = std::mem::take(&mut self.joined);
            match store.settle_dispatched(&mut b, &self.worker, &joined).await {
                Ok(lost) => {
                    for id in lost {
                        tracing::warn!(event = %id, worker = %self.worker, "the claim was lost before settling (lease expired and another replica took over); outcome not recorded");
                    }
                }
                Err(e) => return Err(self.fail(e)),
            }
            store.commit(b).await.map_err(|e| self.fail(e))?;
        }
        self.settled.clear();
        self.turn = None;
        Ok(())
    }

    /// Takes the team's turn to correlate, committing first if the segment holds another's.
    pub(super) async fn turn(
        &mut self,
        d: &Dispatcher,
        org: &str,
        team: &str,
    ) -> Result<(), String> {
        if self
            .turn
            .as_ref()
            .is_some_and(|((o, t), _)| o == org && t == team)
        {
            return Ok(());
        }
        self.commit(&d.store).await?;
        let guard = d.team_turn(org, team).lock_owned().await;
        self.turn = Some(((org.to_owned(), team.to_owned()), guard));
        Ok(())
    }

    /// Records a failed statement: the transaction is dropped (rolled back).
    pub(super) fn fail(&mut self, e: impl std::fmt::Display) -> String {
        let why = format!("store: {e}");
        self.batch = None;
        self.joined.clear();
        self.turn = None;
        self.failed = Some(why.clone());
        why
    }
}

impl Dispatcher {
    /// Dispatches one key's claimed events in order, renewing their claims meanwhile (a slow
    /// agent-runner must not let another replica claim them).
    pub(super) async fn dispatch_chain(
        self: &Arc<Self>,
        chain: Vec<Claimed>,
        settler: &Settler,
        starter: &Starter,
    ) {
        let ids: Vec<String> = chain.iter().map(|e| e.id.clone()).collect();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let me = self.clone();
        // Its own task: on SQLite the renewal waits for the writer, which the chain may hold.
        let renewer = tokio::spawn(async move {
            let lease = me.limits.lease_ms;
            let mut every =
                tokio::time::interval(Duration::from_millis((lease / 3).max(50) as u64));
            every.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = every.tick() => {
                        if let Err(err) = me.store.renew_claims(&ids, &me.worker, lease).await {
                            tracing::warn!(error = %err, "could not renew the claims");
                        }
                    }
                }
            }
        });
        self.work_chain(&chain, settler, starter).await;
        // Counted by the claiming loop, before it started the round's chains.
        self.chains.fetch_sub(1, Ordering::Relaxed);
        let _ = stop.send(());
        let _ = renewer.await;
    }

    async fn work_chain(&self, chain: &[Claimed], settler: &Settler, starter: &Starter) {
        let mut seg = Segment::new(&self.worker);
        for (i, e) in chain.iter().enumerate() {
            // Webhook deliveries first (ADR 0020): while many wait for the event writer, the
            // event waits (a moment, see `YIELD`), unless few chains run (their work is small
            // beside the deliveries', and a storm on one key is one chain) or the segment holds
            // a transaction or a team's turn that others, deliveries among them on SQLite,
            // would wait for in turn.
            if seg.batch.is_none()
                && seg.turn.is_none()
                && self.chains.load(Ordering::Relaxed) > super::FEW_CHAINS
            {
                let waited = self.pressure.yield_to_deliveries(super::YIELD).await;
                if !waited.is_zero() {
                    self.metrics.yielded.inc_by(waited.as_secs_f64());
                }
            }
            // Each event continues its webhook's trace (a new one for events stored without).
            let stored = e.traceparent.as_deref().and_then(TraceContext::parse);
            let trace = stored
                .as_ref()
                .map(TraceContext::child)
                .unwrap_or_else(TraceContext::new_root);
            let mut span = otel::Span::start(
                "orchestrator",
                "dispatch",
                otel::SpanKind::Consumer,
                &trace,
                stored.as_ref().map(|s| s.span_id.as_str()),
            );
            span.attr_str("switchyard.event", &e.id);
            let outcome = trace.scope(self.decide(e, &mut seg, starter)).await;
            if seg.failed.is_some() {
                span.error("the claim was lost");
                return self.abandon(&mut seg, &chain[i..]).await;
            }
            let settlement = self.settlement(e, outcome);
            span.attr("switchyard.status", settlement.status.as_str());
            span.end();
            self.count(settlement.status);
            let waits = settlement.status.is_pending();
            // A run started: the segment committed before the call, so its settlement joins
            // other chains' in the settler's next transaction (and is committed when answered).
            let together = settlement.run_id.is_some()
                && settlement.is_plain_dispatch()
                && seg.batch.is_none();
            let written = if together {
                settler.settle(e.id.clone(), settlement).await
            } else {
                match seg.open(self).await {
                    Ok(_) if settlement.joins_only() => {
                        seg.joined.push((e.id.clone(), settlement));
                        Ok(true)
                    }
                    Ok(batch) => self
                        .store
                        .settle_in(batch, &e.id, &self.worker, &settlement)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(_) => return self.abandon(&mut seg, &chain[i..]).await,
                }
            };
            match written {
                Ok(true) if together => {}
                Ok(true) => seg.settled.push(e.id.clone()),
                Ok(false) => {
                    // The lease ran out and another replica took over: it has the rest too.
                    tracing::warn!(event = %e.id, worker = %self.worker, "the claim was lost before settling (lease expired and another replica took over); outcome not recorded");
                    let _ = seg.commit(&self.store).await;
                    self.put_back(&chain[i + 1..]).await;
                    return;
                }
                Err(err) => {
                    seg.fail(err);
                    return self.abandon(&mut seg, &chain[i..]).await;
                }
            }
            let rest = &chain[i + 1..];
            if (waits || seg.settled.len() >= SEGMENT || rest.is_empty())
                && seg.commit(&self.store).await.is_err()
            {
                return self.abandon(&mut seg, rest).await;
            }
            if waits {
                // The key's later events follow this one: they wait until it is done.
                self.put_back(rest).await;
                return;
            }
        }
    }

    /// A write failed: what the open transaction held is gone, so its events and the rest of the
    /// key's are put back without counting the attempt (their lease would otherwise hold them).
    async fn abandon(&self, seg: &mut Segment, rest: &[Claimed]) {
        let why = seg.failed.take().unwrap_or_default();
        tracing::warn!(error = %why, "dispatch could not be recorded; the key's events are put back");
        let mut ids = std::mem::take(&mut seg.settled);
        ids.extend(rest.iter().map(|e| e.id.clone()));
        if let Err(err) = self.store.release(&self.worker, Some(&ids)).await {
            tracing::error!(error = %err, "could not put the events back; their lease will expire and they are retried");
        }
    }

    async fn put_back(&self, rest: &[Claimed]) {
        let ids: Vec<String> = rest.iter().map(|e| e.id.clone()).collect();
        if let Err(err) = self.store.release(&self.worker, Some(&ids)).await {
            tracing::warn!(error = %err, "could not put the key's later events back; their lease will expire");
        }
    }

    pub(super) fn count(&self, status: Status) {
        self.metrics
            .dispatches
            .get_or_create(&super::DispatchLabels {
                outcome: status.as_str().into(),
            })
            .inc();
    }
}

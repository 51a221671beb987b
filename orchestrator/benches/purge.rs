//! The retention purge at scale: `BENCH_ROWS` finished events (default 10,000,000, on PostgreSQL,
//! with two timeline rows each and ~520-byte payloads), of which 90% are past the retention,
//! purged by [`Store::purge`] (transactions of `PURGE_BATCH` events). Reference, in the same run on
//! an identical table: the previous purge, one `DELETE` of everything in one transaction.
//!
//! Run: `cargo bench -p switchyard-orchestrator --bench purge`
//! Knobs: BENCH_BACKEND=postgres|sqlite (postgres), BENCH_ROWS (10000000).
//!
//! Prints each purge's rows per second, their ratio, and how long the longest transaction of the
//! batched purge was (what a concurrent writer could wait behind on SQLite, and the longest
//! snapshot PostgreSQL keeps open).

use std::time::Instant;

use switchyard_common::db::Backend;
use switchyard_common::time::now_ms;
use switchyard_orchestrator::store::{PURGE_BATCH, Store};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

mod support;

use support::{DAY, fresh};

#[tokio::main]
async fn main() {
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("sqlite") => Backend::Sqlite,
        _ => Backend::Postgres,
    };
    let rows = knob("BENCH_ROWS", 10_000_000);
    let old = rows - rows / 10;
    let cutoff = now_ms() - 7 * DAY;
    println!("purge of {old} of {rows} events past a 7-day retention ({backend:?})");

    // The batched purge, batch by batch as Store::purge runs it, each transaction timed.
    let (_t1, db) = fresh(backend, rows).await;
    let store = Store::new(db.clone());
    let t = Instant::now();
    let mut batches: Vec<f64> = Vec::new();
    let mut purged = 0usize;
    loop {
        let b = Instant::now();
        let n = store.purge_batch(cutoff, PURGE_BATCH).await.unwrap().len();
        batches.push(b.elapsed().as_secs_f64() * 1000.0);
        purged += n;
        if (n as i64) < PURGE_BATCH {
            break;
        }
    }
    let batched = t.elapsed().as_secs_f64();
    assert_eq!(purged, old, "every old event purged");
    batches.sort_by(f64::total_cmp);
    let p99 = batches[(batches.len() * 99 / 100).min(batches.len() - 1)];
    let longest = batches.last().copied().unwrap_or(0.0);
    drop(store);

    // Reference: one DELETE of everything in one transaction (the previous purge).
    let (_t2, db2) = fresh(backend, rows).await;
    let t = Instant::now();
    let mut tx = db2.pool.begin().await.unwrap();
    sqlx::query(
        "DELETE FROM or_event_timeline WHERE event_id IN \
         (SELECT id FROM or_events WHERE received_at < $1 AND status IN ('dispatched', 'unrouted', 'dead_lettered'))",
    )
    .bind(cutoff)
    .execute(&mut *tx)
    .await
    .unwrap();
    let n = sqlx::query(
        "DELETE FROM or_events WHERE received_at < $1 AND status IN ('dispatched', 'unrouted', 'dead_lettered')",
    )
    .bind(cutoff)
    .execute(&mut *tx)
    .await
    .unwrap()
    .rows_affected();
    tx.commit().await.unwrap();
    let one = t.elapsed().as_secs_f64();
    assert_eq!(n as usize, old);

    println!(
        "batched purge ({PURGE_BATCH} per transaction): {old} events in {batched:.1} s = {:.0} events/s",
        old as f64 / batched
    );
    println!(
        "  {} transactions: p50 {:.0} ms, p99 {p99:.0} ms, longest {longest:.0} ms",
        batches.len(),
        batches[batches.len() / 2]
    );
    println!(
        "reference, one transaction: {old} events in {one:.1} s = {:.0} events/s (batched/one = {:.2}x)",
        old as f64 / one,
        one / batched
    );
}

//! The HTTP floor for `scripts/bench-webhooks` (`FLOOR=1`): a server on the orchestrator's
//! webhook path that answers every delivery 200 with an event id at once, without verifying,
//! parsing or storing anything, on the same stack as the orchestrator (tokio, hyper, axum).
//! `switchyard loadgen` against it measures what the load generator and one HTTP round trip
//! cost on this machine, which bounds any acknowledgement rate from above.
//!
//! With a PostgreSQL URL as its second argument (`FLOOR_DB=1`), it is the floor of a *durable*
//! acknowledgement instead: each body is stored before its 200, by a group commit shaped like the
//! orchestrator's (ADR 0013: one writer takes whatever queued, up to 256, and stores it in one
//! autocommitted statement), into a table shaped like pgbench's reference (`id BIGSERIAL`,
//! `payload JSONB`). No verification, no parsing in Rust, one index: what any webhook front door
//! on this HTTP stack and this database pays at the least for a committed acknowledgement.
//!
//! `cargo run --release -p switchyard-cli --example http_floor -- 127.0.0.1:18090 [postgres://...]`

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::sync::{mpsc, oneshot};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The most bodies one statement stores.
const BATCH: usize = 256;

/// A body to store, and where its id goes (`None`: not stored).
type Pending = (axum::body::Bytes, oneshot::Sender<Option<i64>>);

type Store = Option<mpsc::Sender<Pending>>;

async fn ack(
    State(store): State<Store>,
    body: axum::body::Bytes,
) -> Result<([(&'static str, &'static str); 1], String), StatusCode> {
    // The body is read in full, as the orchestrator reads it before verifying.
    let bytes = body.len();
    let id = match &store {
        None => NEXT.fetch_add(1, Ordering::Relaxed) as i64,
        Some(writer) => {
            let (answer, answered) = oneshot::channel();
            writer
                .send((body, answer))
                .await
                .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
            answered
                .await
                .ok()
                .flatten()
                .ok_or(StatusCode::SERVICE_UNAVAILABLE)?
        }
    };
    Ok((
        [("content-type", "application/json")],
        format!("{{\"event_id\":\"floor-{id}\",\"duplicate\":false,\"bytes\":{bytes}}}"),
    ))
}

/// The group commit: one statement for whatever queued while the last one ran.
async fn write(pool: sqlx::PgPool, mut rx: mpsc::Receiver<Pending>) {
    let mut queued = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut queued, BATCH).await > 0 {
        let bodies: Vec<String> = queued
            .iter()
            .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
            .collect();
        let ids: Result<Vec<i64>, _> = sqlx::query_scalar(
            "INSERT INTO floor_events (payload) SELECT p::jsonb FROM unnest($1::text[]) WITH ORDINALITY AS b (p, n) ORDER BY n RETURNING id",
        )
        .bind(&bodies)
        .fetch_all(&pool)
        .await;
        match ids {
            Ok(ids) if ids.len() == queued.len() => {
                for ((_, answer), id) in queued.drain(..).zip(ids) {
                    let _ = answer.send(Some(id));
                }
            }
            other => {
                eprintln!("storing a batch failed: {other:?}");
                for (_, answer) in queued.drain(..) {
                    let _ = answer.send(None);
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let store: Store = match std::env::args().nth(2) {
        None => None,
        Some(url) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(&url)
                .await?;
            sqlx::query("CREATE TABLE IF NOT EXISTS floor_events (id BIGSERIAL PRIMARY KEY, payload JSONB NOT NULL)")
                .execute(&pool)
                .await?;
            let (tx, rx) = mpsc::channel(BATCH * 4);
            tokio::spawn(write(pool, rx));
            Some(tx)
        }
    };
    let app = Router::new()
        .route("/webhooks/pagerduty/{id}", post(ack))
        .with_state(store);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("http_floor listening on {addr}");
    axum::serve(listener, app).await?;
    Ok(())
}

//! The HTTP floor for `scripts/bench-webhooks` (`FLOOR=1`): a server on the orchestrator's
//! webhook path that answers every delivery 200 with an event id at once, without verifying,
//! parsing or storing anything, on the same stack as the orchestrator (tokio, hyper, axum).
//! `switchyard loadgen` against it measures what the load generator and one HTTP round trip
//! cost on this machine, which bounds any acknowledgement rate from above.
//!
//! `cargo run --release -p switchyard-cli --example http_floor -- 127.0.0.1:18090`

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::post;

static NEXT: AtomicU64 = AtomicU64::new(0);

async fn ack(body: axum::body::Bytes) -> ([(&'static str, &'static str); 1], String) {
    // The body is read in full, as the orchestrator reads it before verifying.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (
        [("content-type", "application/json")],
        format!(
            "{{\"event_id\":\"floor-{n}\",\"duplicate\":false,\"bytes\":{}}}",
            body.len()
        ),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let app = Router::new().route("/webhooks/pagerduty/{id}", post(ack));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("http_floor listening on {addr}");
    axum::serve(listener, app).await?;
    Ok(())
}

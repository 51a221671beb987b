//! `switchyard loadgen`: uniquely signed PagerDuty deliveries at a given concurrency and rate.
//!
//! Reports throughput and p50/p99/p99.9 latency of the acknowledgements; then, with
//! `--database-url`, checks that every acknowledged delivery is stored exactly once under the event
//! id it was acknowledged with, and reports the latency from acknowledgement to dispatch (the
//! agent-runner accepting the run).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::Row;
use switchyard_common::db::Db;
use switchyard_orchestrator::store;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// The orchestrator's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A PagerDuty integration id.
    #[arg(long)]
    pub integration: String,
    /// One of its secrets.
    #[arg(long, env = "LOADGEN_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The PagerDuty service id the team routes.
    #[arg(long, default_value = "PSVC1")]
    pub service: String,
    /// Deliveries to send.
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Requests per second at most (0: as fast as the concurrency allows).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// The orchestrator's database, to check what was stored (and dispatch latency).
    #[arg(long)]
    pub database_url: Option<String>,
    /// How long to wait for dispatch before measuring it.
    #[arg(long, default_value_t = 120)]
    pub dispatch_wait_seconds: u64,
    /// Send a delivery again (same delivery id, as senders do) when it is not acknowledged: a
    /// transport error, 429 or 5xx. Backoff from 250 ms, doubling, at most 4 s. 0: never.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Every delivery reports the same PagerDuty incident (one correlation key: a storm).
    #[arg(long)]
    pub same_incident: bool,
    /// Give up on a request not answered within this many seconds, as a sender does (GitHub
    /// waits 10 s). It counts as timed out, apart from other transport errors, and is sent again
    /// like them when `--retries` allows.
    #[arg(long, default_value_t = 10)]
    pub request_timeout_seconds: u64,
}

/// The status recorded for a request that was not answered: 0 for a transport error, this for
/// one that timed out.
const TIMED_OUT: u16 = 1;

/// What became of one delivery: its last answer's status and event id, that answer's latency, and
/// how many of its attempts timed out.
struct Sent {
    delivery: String,
    status: u16,
    event_id: Option<String>,
    elapsed: Duration,
    timeouts: u32,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

pub async fn run(a: LoadgenArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .timeout(Duration::from_secs(a.request_timeout_seconds.max(1)))
        .build()?;
    let url = format!(
        "{}/webhooks/pagerduty/{}",
        a.url.trim_end_matches('/'),
        a.integration
    );
    // Parsed once: a URL parse per request was 8% of the load generator's CPU.
    let url: reqwest::Url = url.parse().context("the orchestrator URL")?;
    let run_tag = uuid_like();
    // Every delivery is built and signed before the clock starts. The load generator shares the
    // machine with what it measures, and a sender does this work on its own machine.
    let deliveries: Vec<(String, String, String)> = (0..a.requests)
        .map(|i| {
            let incident = if a.same_incident {
                format!("INC-{run_tag}")
            } else {
                format!("INC-{run_tag}-{i}")
            };
            let delivery = format!("lg-{run_tag}-{i}");
            let body = json!({"event": {"id": delivery, "event_type": "incident.triggered",
                "data": {"id": incident, "type": "incident", "service": {"id": a.service}}}})
            .to_string();
            let sig = format!(
                "v1={}",
                pagerduty_signature(a.secret.as_bytes(), body.as_bytes())
            );
            (delivery, body, sig)
        })
        .collect();
    let sem = Arc::new(Semaphore::new(a.concurrency.max(1)));
    let mut ticker = (a.rate > 0)
        .then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(a.rate))));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(a.requests);
    for (delivery, body, sig) in deliveries {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let permit = sem.clone().acquire_owned().await?;
        let (http, url, retries) = (http.clone(), url.clone(), a.retries);
        tasks.push(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            let mut attempt = 0;
            let mut timeouts = 0u32;
            loop {
                let t = Instant::now();
                let resp = http
                    .post(url.clone())
                    .header("content-type", "application/json")
                    .header("x-pagerduty-signature", &sig)
                    .header("x-webhook-id", &delivery)
                    .body(body.clone())
                    .send()
                    .await;
                let elapsed = t.elapsed();
                let (status, event_id) = match resp {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        (status, v["event_id"].as_str().map(str::to_owned))
                    }
                    Err(e) if e.is_timeout() => (TIMED_OUT, None),
                    Err(_) => (0, None),
                };
                timeouts += u32::from(status == TIMED_OUT);
                let retryable = status <= TIMED_OUT || status == 429 || status >= 500;
                if !retryable || attempt >= retries {
                    drop(permit);
                    return Sent {
                        delivery,
                        status,
                        event_id,
                        elapsed,
                        timeouts,
                    };
                }
                attempt += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(4));
            }
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await?);
    }
    let wall = start.elapsed();
    let mut lat: Vec<Duration> = results
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.elapsed)
        .collect();
    lat.sort();
    let acked = lat.len();
    let mut by_status = std::collections::BTreeMap::new();
    for r in &results {
        *by_status.entry(r.status).or_insert(0usize) += 1;
    }
    println!(
        "sent {} deliveries in {:.2} s: {:.0} acknowledged/s; statuses {:?} (0 = transport error, 1 = timed out)",
        results.len(),
        wall.as_secs_f64(),
        acked as f64 / wall.as_secs_f64(),
        by_status
    );
    let timeouts: u32 = results.iter().map(|r| r.timeouts).sum();
    if timeouts > 0 {
        println!(
            "timed out: {timeouts} requests not answered within {} s (each sent again while retries allowed)",
            a.request_timeout_seconds.max(1)
        );
    }
    println!(
        "acknowledgement latency: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        lat.last().map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
    );

    let Some(db_url) = a.database_url else {
        return Ok(());
    };
    let db = Db::connect(&db_url, 4)
        .await
        .context("connecting to the orchestrator's database")?;
    // One read of this run's events (not a query per delivery: the database's commit count
    // after a run is the services' work, not the check's). A delivery stored twice would show
    // as two rows of its id, which the unique key forbids; one stored under another id than
    // its acknowledgement named is mismatched.
    let prefix = format!("lg-{run_tag}-%");
    let mut stored: HashMap<String, Vec<String>> = HashMap::new();
    for r in sqlx::query(
        "SELECT delivery_id, id FROM or_events WHERE integration_id = $1 AND delivery_id LIKE $2",
    )
    .bind(&a.integration)
    .bind(&prefix)
    .fetch_all(&db.pool)
    .await?
    {
        stored
            .entry(r.try_get("delivery_id")?)
            .or_default()
            .push(r.try_get("id")?);
    }
    let mut missing = 0;
    let mut mismatched = 0;
    for r in results.iter().filter(|r| r.status == 200) {
        match stored.get(&r.delivery).map(Vec::as_slice) {
            None | Some([]) => missing += 1,
            Some([id]) if Some(id) == r.event_id.as_ref() => {}
            Some(_) => mismatched += 1,
        }
    }
    println!(
        "stored exactly once: {} of {acked} acknowledged ({missing} missing, {mismatched} duplicated or under another id)",
        acked - missing - mismatched
    );
    println!(
        "loadgen: sent={} acknowledged={acked} stored_once={} missing={missing} mismatched={mismatched} timed_out={timeouts} tag={run_tag}",
        results.len(),
        acked - missing - mismatched
    );
    // Acknowledgement to dispatch: from the event's receipt to the runner accepting its run, or
    // to its joining an incident whose run has it (one run per incident).
    let deadline = Instant::now() + Duration::from_secs(a.dispatch_wait_seconds);
    loop {
        // Only the events still waiting, through the pending events' partial index: counting
        // the whole run's events every 200 ms took 16 ms of PostgreSQL's time a poll in a burst
        // of 10,000, about 5% of a core beside the dispatcher it measures.
        let pending: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM or_events WHERE integration_id = $1 AND delivery_id LIKE $2 AND status IN ({})",
            store::sql_list(store::Status::is_pending)
        ))
            .bind(&a.integration)
            .bind(&prefix)
            .fetch_one(&db.pool)
            .await?;
        if pending == 0 || Instant::now() > deadline {
            if pending > 0 {
                println!(
                    "{pending} events not dispatched within {} s",
                    a.dispatch_wait_seconds
                );
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = sqlx::query(
        // An event whose run started keeps when on its row; one that joined an incident, on its
        // timeline (as did every event before migration 0029).
        "SELECT received_at, at, updated_at FROM (SELECT e.received_at, e.updated_at, COALESCE(e.dispatched_at, \
           (SELECT MIN(t.at) FROM or_event_timeline t WHERE t.event_id = e.id AND t.kind IN ('dispatched', 'joined_incident'))) AS at \
         FROM or_events e WHERE e.integration_id = $1 AND e.delivery_id LIKE $2) d WHERE at IS NOT NULL",
    )
    .bind(&a.integration)
    .bind(&prefix)
    .fetch_all(&db.pool)
    .await?;
    let at = |col: &'static str| {
        rows.iter()
            .filter_map(move |r| r.try_get::<i64, _>(col).ok())
    };
    if let (Some(first), Some(last)) = (at("received_at").min(), at("at").max()) {
        println!(
            "drained: the last of {} events dispatched {:.2} s after the first was received",
            rows.len(),
            (last - first) as f64 / 1e3
        );
    }
    // From receipt to `to`: the timeline's `at` (the runner accepted the run, or the signal
    // joined its incident) and the event's `updated_at` (that outcome committed).
    let latencies = |to: &'static str| {
        let mut d: Vec<Duration> = rows
            .iter()
            .filter_map(|r| {
                Some(Duration::from_millis(
                    (r.try_get::<i64, _>(to).ok()? - r.try_get::<i64, _>("received_at").ok()?)
                        .max(0) as u64,
                ))
            })
            .collect();
        d.sort();
        d
    };
    for (what, to) in [
        ("acknowledgement to dispatch", "at"),
        ("acknowledgement to dispatch settled", "updated_at"),
    ] {
        let d = latencies(to);
        println!(
            "{what} ({} events): p50 {:.0} ms  p99 {:.0} ms  p99.9 {:.0} ms  max {:.0} ms",
            d.len(),
            pct(&d, 0.5),
            pct(&d, 0.99),
            pct(&d, 0.999),
            d.last().map(|x| x.as_secs_f64() * 1e3).unwrap_or(0.0)
        );
    }
    if missing > 0 || mismatched > 0 {
        anyhow::bail!("{missing} acknowledged deliveries missing, {mismatched} stored wrongly");
    }
    Ok(())
}

fn uuid_like() -> String {
    switchyard_common::auth::random_hex(4)
}

/// PagerDuty's signature of a body: hex HMAC-SHA256 with the subscription's secret (the load
/// generator signs as the sender does; the orchestrator only verifies).
fn pagerduty_signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

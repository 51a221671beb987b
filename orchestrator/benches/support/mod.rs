//! What the benchmarks share: a database filled with finished events, written by SQL in bulk
//! (millions of rows in seconds) rather than through the webhook path.
#![allow(dead_code)]

use std::time::Instant;

use switchyard_common::db::testing::TestDb;
use switchyard_common::db::{Backend, Db};
use switchyard_common::time::now_ms;

pub const DAY: i64 = 86_400_000;

/// Fills the inbox with `rows` finished events: 90% received 8 days ago, 10% today.
pub async fn fill(db: &Db, rows: usize) {
    let now = now_ms();
    let chunk = 500_000usize;
    let payload = format!(
        "{{\"object_kind\": \"issue\", \"text\": \"{}\"}}",
        "x".repeat(470)
    );
    let mut start = 0usize;
    while start < rows {
        let end = (start + chunk).min(rows);
        let (series, id) = match db.backend {
            Backend::Postgres => (
                format!("generate_series({}, {})", start + 1, end),
                "lpad(g::text, 12, '0')",
            ),
            Backend::Sqlite => (
                format!(
                    "(WITH RECURSIVE s(g) AS (SELECT {} UNION ALL SELECT g + 1 FROM s WHERE g < {}) SELECT g FROM s)",
                    start + 1,
                    end
                ),
                "printf('%012d', g)",
            ),
        };
        let from = match db.backend {
            Backend::Postgres => format!("FROM {series} AS g"),
            Backend::Sqlite => format!("FROM {series}"),
        };
        let at = format!(
            "CASE WHEN g % 10 = 0 THEN {now} ELSE {} + g END",
            now - 8 * DAY
        );
        // The event's id, time-ordered like `ids::new_id`'s (UUIDv7: the time in its first 48
        // bits), and unique by `g`.
        let eid = match db.backend {
            Backend::Postgres => format!(
                "lpad(to_hex(({at}) >> 16), 8, '0') || '-' || lpad(to_hex(({at}) & 65535), 4, '0') || '-7000-8000-' || lpad(g::text, 12, '0')"
            ),
            Backend::Sqlite => {
                format!("printf('%08x-%04x-7000-8000-%012d', ({at}) >> 16, ({at}) & 65535, g)")
            }
        };
        sqlx::query(&format!(
            "INSERT INTO or_events (id, integration_id, delivery_id, org_id, source, event_type, correlation_key, \
             identifiers, payload, status, team_id, attempts, next_attempt_at, received_at, updated_at) \
             SELECT {eid}, 'i', 'd' || {id}, 'acme', 'gitlab', 'issue', 'k' || (g % 1000), '[]', '{payload}', \
             'dispatched', 'checkout', 1, 0, {at}, {at} {from}"
        ))
        .execute(&db.pool)
        .await
        .expect("filling the events");
        for kind in ["routed", "dispatched"] {
            sqlx::query(&format!(
                "INSERT INTO or_event_timeline (id, event_id, at, kind, detail) \
                 SELECT 't{kind}' || {id}, {eid}, {at}, '{kind}', NULL {from}"
            ))
            .execute(&db.pool)
            .await
            .expect("filling the timelines");
        }
        start = end;
    }
    if db.backend == Backend::Postgres {
        sqlx::query("VACUUM ANALYZE or_events")
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query("VACUUM ANALYZE or_event_timeline")
            .execute(&db.pool)
            .await
            .unwrap();
    }
}

pub async fn fresh(backend: Backend, rows: usize) -> (TestDb, Db) {
    let test = TestDb::new(backend).await.unwrap();
    let db = Db::connect(&test.url, 4).await.unwrap();
    db.migrate().await.unwrap();
    let t = Instant::now();
    fill(&db, rows).await;
    println!(
        "  filled {rows} events and {} timeline rows in {:.1} s",
        rows * 2,
        t.elapsed().as_secs_f64()
    );
    (test, db)
}

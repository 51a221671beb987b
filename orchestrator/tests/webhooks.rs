//! The webhook path in-process, on PostgreSQL and SQLite: every source verifies over HTTP, the
//! ingress ceiling only answers 429 to senders that retry it, failed verifications from one
//! address are limited, and secrets rotate.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use base64::Engine;
use serde_json::{Value, json};
use switchyard_common::auth::ServiceKey;
use switchyard_common::crypto::Keyring;
use switchyard_common::db::Backend;
use switchyard_common::db::testing::TestDb;
use switchyard_common::time::now_ms;
use switchyard_orchestrator::settings::Limits;
use switchyard_orchestrator::sources::Source;
use switchyard_orchestrator::sources::verify::sign::{hmac_b64, hmac_hex};
use switchyard_orchestrator::store::{Integration, Store};
use switchyard_orchestrator::{AppState, app};
use tower::ServiceExt;

struct Ctx {
    state: AppState,
    _db: TestDb,
}

async fn ctx(b: Backend, limits: Limits) -> Ctx {
    let db = TestDb::new(b).await.unwrap();
    let store = Store::new(db.connect().await.unwrap());
    let keyring = Keyring::parse(&Keyring::generate_spec("t")).unwrap();
    // Nothing listens on port 9: no dispatch happens in these tests, only ingestion.
    let state = AppState::new(
        store,
        keyring,
        None,
        ServiceKey::generate(),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        limits,
    );
    Ctx { state, _db: db }
}

async fn integration(c: &Ctx, source: Source, secret: &str, settings: Value) -> Integration {
    c.state
        .store
        .create_integration(
            &c.state.keyring,
            &switchyard_common::http::Actor::system("test"),
            &switchyard_orchestrator::store::NewIntegration {
                org: Some("acme"),
                source,
                name: "t",
                default_team: None,
                settings: &settings,
                secrets: &[secret.to_owned()],
            },
        )
        .await
        .unwrap()
}

async fn send(
    c: &Ctx,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    from: &str,
) -> (u16, Value) {
    let mut req = Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let mut req = req.body(Body::from(body.to_vec())).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo::<SocketAddr>(from.parse().unwrap()));
    let resp = app(c.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const IP: &str = "192.0.2.10:5000";

/// (source, body, headers signed with `secret`), for each source not covered end to end.
fn signed(source: Source, secret: &str, n: u32) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let now = now_ms() / 1000;
    let json_ct = ("content-type", "application/json".to_owned());
    match source {
        Source::Sentry => {
            let b = json!({"action": "created", "data": {"issue": {"id": format!("{n}"), "project": {"slug": "web"}}}}).to_string().into_bytes();
            let h = vec![
                ("sentry-hook-signature", hmac_hex(secret.as_bytes(), &[&b])),
                ("sentry-hook-resource", "issue".into()),
                ("request-id", format!("r-{n}")),
                json_ct,
            ];
            (b, h)
        }
        Source::Linear => {
            let b = json!({"action": "create", "type": "Issue", "data": {"id": format!("i{n}"), "team": {"key": "CHK"}}, "webhookTimestamp": now_ms()}).to_string().into_bytes();
            let h = vec![
                ("linear-signature", hmac_hex(secret.as_bytes(), &[&b])),
                ("linear-delivery", format!("d-{n}")),
                ("linear-event", "Issue".into()),
                json_ct,
            ];
            (b, h)
        }
        Source::Gitlab => {
            let b = json!({"object_kind": "issue", "project": {"path_with_namespace": "acme/api"}, "object_attributes": {"iid": n}}).to_string().into_bytes();
            (
                b,
                vec![
                    ("x-gitlab-token", secret.to_owned()),
                    ("idempotency-key", format!("k-{n}")),
                    json_ct,
                ],
            )
        }
        Source::Jira => {
            let b = json!({"webhookEvent": "jira:issue_created", "issue": {"key": format!("OPS-{n}"), "fields": {"project": {"key": "OPS"}}}}).to_string().into_bytes();
            let h = vec![
                (
                    "x-hub-signature",
                    format!("sha256={}", hmac_hex(secret.as_bytes(), &[&b])),
                ),
                ("x-atlassian-webhook-identifier", format!("j-{n}")),
                json_ct,
            ];
            (b, h)
        }
        Source::Circleci => {
            let b = json!({"id": format!("c-{n}"), "type": "workflow-completed", "project": {"slug": "gh/acme/api"}}).to_string().into_bytes();
            (
                b.clone(),
                vec![
                    (
                        "circleci-signature",
                        format!("v1={}", hmac_hex(secret.as_bytes(), &[&b])),
                    ),
                    json_ct,
                ],
            )
        }
        Source::Datadog | Source::Opsgenie | Source::Alertmanager => {
            let b = json!({"id": format!("a-{n}"), "alerts": [], "groupKey": format!("g{n}"), "service": "api"}).to_string().into_bytes();
            (
                b,
                vec![("authorization", format!("Bearer {secret}")), json_ct],
            )
        }
        Source::Grafana => {
            let b = json!({"groupKey": format!("g{n}"), "receiver": "sy", "status": "firing", "alerts": [{"fingerprint": "f", "status": "firing", "labels": {"team": "t"}}]}).to_string().into_bytes();
            let ts = now.to_string();
            let h = vec![
                (
                    "x-grafana-alerting-signature",
                    hmac_hex(secret.as_bytes(), &[ts.as_bytes(), b":", &b]),
                ),
                ("x-grafana-alerting-signature-timestamp", ts),
                json_ct,
            ];
            (b, h)
        }
        Source::Standard | Source::Incidentio => {
            let key = base64::engine::general_purpose::STANDARD
                .decode(secret.trim_start_matches("whsec_"))
                .unwrap();
            let b = json!({"type": "invoice.paid", "id": n})
                .to_string()
                .into_bytes();
            let id = format!("msg_{n}");
            let ts = now.to_string();
            let sig = hmac_b64(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", &b]);
            (
                b,
                vec![
                    ("webhook-id", id),
                    ("webhook-timestamp", ts),
                    ("webhook-signature", format!("v1,{sig}")),
                    json_ct,
                ],
            )
        }
        Source::Slack => {
            let b = json!({"type": "event_callback", "team_id": "T1", "event_id": format!("Ev{n}"), "event": {"type": "message", "channel": "C1", "ts": "1.0"}}).to_string().into_bytes();
            let sig = hmac_hex(
                secret.as_bytes(),
                &[b"v0:", now.to_string().as_bytes(), b":", &b],
            );
            (
                b,
                vec![
                    ("x-slack-request-timestamp", now.to_string()),
                    ("x-slack-signature", format!("v0={sig}")),
                    json_ct,
                ],
            )
        }
        Source::Github => {
            let b = json!({"action": "opened", "issue": {"number": n}, "repository": {"full_name": "acme/api", "owner": {"login": "acme"}}}).to_string().into_bytes();
            let h = vec![
                (
                    "x-hub-signature-256",
                    format!("sha256={}", hmac_hex(secret.as_bytes(), &[&b])),
                ),
                ("x-github-event", "issues".into()),
                ("x-github-delivery", format!("g-{n}")),
                json_ct,
            ];
            (b, h)
        }
        Source::Pagerduty => {
            let b = json!({"event": {"id": format!("e{n}"), "event_type": "incident.triggered", "data": {"id": format!("P{n}"), "service": {"id": "S"}}}}).to_string().into_bytes();
            let h = vec![
                (
                    "x-pagerduty-signature",
                    format!("v1={}", hmac_hex(secret.as_bytes(), &[&b])),
                ),
                ("x-webhook-id", format!("w-{n}")),
                json_ct,
            ];
            (b, h)
        }
    }
}

fn secret_for(source: Source) -> String {
    match source {
        Source::Standard | Source::Incidentio => format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(b"a-standard-webhooks-key-0123456")
        ),
        _ => "source-secret-0123456789".to_owned(),
    }
}

async fn every_source_verifies_over_http(b: Backend) {
    let c = ctx(b, Limits::default()).await;
    for &source in Source::ALL {
        let secret = secret_for(source);
        let i = integration(&c, source, &secret, json!({})).await;
        let path = format!("/webhooks/{}/{}", source.as_str(), i.id);
        let (body, headers) = signed(source, &secret, 1);
        let (st, v) = send(&c, &path, &headers, &body, IP).await;
        assert_eq!(
            (st, v["duplicate"].as_bool()),
            (200, Some(false)),
            "{source:?}: {v}"
        );
        let (st, v) = send(&c, &path, &headers, &body, IP).await;
        assert_eq!(
            (st, v["duplicate"].as_bool()),
            (200, Some(true)),
            "{source:?} redelivery: {v}"
        );
        // Tampered body, and a body signed with another secret.
        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        // Token-authenticated senders (no body signature) cannot detect tampering; signing ones must.
        if !matches!(
            source,
            Source::Alertmanager | Source::Gitlab | Source::Datadog | Source::Opsgenie
        ) {
            assert_eq!(
                send(&c, &path, &headers, &tampered, IP).await.0,
                401,
                "{source:?} tampered"
            );
        }
        let other = match source {
            Source::Standard | Source::Incidentio => format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD
                    .encode(b"another-key-entirely-0123456789")
            ),
            _ => "a-different-secret-000".to_owned(),
        };
        let (body2, headers2) = signed(source, &other, 2);
        assert_eq!(
            send(&c, &path, &headers2, &body2, IP).await.0,
            401,
            "{source:?} wrong secret"
        );
        assert_eq!(
            send(&c, &path, &[], &body2, IP).await.0,
            401,
            "{source:?} unsigned"
        );
    }
    let stored = c.state.store.count_by_status().await.unwrap();
    assert_eq!(
        stored,
        vec![("received".to_owned(), Source::ALL.len() as i64)]
    );
}

async fn ingress_ceiling_spares_senders_that_drop_4xx(b: Backend) {
    let c = ctx(
        b,
        Limits {
            ingress_per_second: 1,
            ..Limits::default()
        },
    )
    .await;
    let pd = integration(&c, Source::Pagerduty, "pd-secret-0123456789", json!({})).await;
    let am = integration(&c, Source::Alertmanager, "am-secret-0123456789", json!({})).await;
    let mut statuses = Vec::new();
    for n in 0..5 {
        let (body, h) = signed(Source::Pagerduty, "pd-secret-0123456789", 100 + n);
        statuses.push(
            send(&c, &format!("/webhooks/pagerduty/{}", pd.id), &h, &body, IP)
                .await
                .0,
        );
    }
    assert!(
        statuses.contains(&429),
        "PagerDuty retries 429s, so it can be throttled: {statuses:?}"
    );
    for n in 0..5 {
        let (body, h) = signed(Source::Alertmanager, "am-secret-0123456789", 200 + n);
        assert_eq!(
            send(
                &c,
                &format!("/webhooks/alertmanager/{}", am.id),
                &h,
                &body,
                IP
            )
            .await
            .0,
            200,
            "Alertmanager loses alerts on 4xx"
        );
    }
}

async fn failed_verification_floods_are_limited_per_address(b: Backend) {
    let c = ctx(
        b,
        Limits {
            unverified_per_minute: 3,
            ..Limits::default()
        },
    )
    .await;
    let pd = integration(&c, Source::Pagerduty, "pd-secret-0123456789", json!({})).await;
    let path = format!("/webhooks/pagerduty/{}", pd.id);
    let (body, h) = signed(Source::Pagerduty, "wrong-secret-000000", 1);
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(send(&c, &path, &h, &body, "198.51.100.7:1000").await.0);
        }
        v
    };
    assert_eq!(&statuses[..3], &[401, 401, 401]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another address is not affected, and a correctly signed delivery still gets through.
    assert_eq!(send(&c, &path, &h, &body, "198.51.100.8:1000").await.0, 401);
    let (good, gh) = signed(Source::Pagerduty, "pd-secret-0123456789", 9);
    assert_eq!(
        send(&c, &path, &gh, &good, "198.51.100.9:1000").await.0,
        200
    );
}

async fn behind_a_trusted_proxy_the_forwarded_address_counts(b: Backend) {
    let c = ctx(
        b,
        Limits {
            unverified_per_minute: 2,
            trusted_proxy_hops: 1,
            ..Limits::default()
        },
    )
    .await;
    let pd = integration(&c, Source::Pagerduty, "pd-secret-0123456789", json!({})).await;
    let path = format!("/webhooks/pagerduty/{}", pd.id);
    let (body, mut h) = signed(Source::Pagerduty, "wrong-secret-000000", 1);
    // Everything arrives from the ingress (one peer address); the client is what it appended.
    let ingress = "10.0.0.1:443";
    h.push(("x-forwarded-for", "203.0.113.9, 198.51.100.20".to_owned()));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(&c, &path, &h, &body, ingress).await.0);
    }
    assert_eq!(statuses, [401, 401, 429], "198.51.100.20 is limited");
    // A different client behind the same ingress is not: only the appended entry is believed.
    h.pop();
    h.push(("x-forwarded-for", "198.51.100.20, 198.51.100.21".to_owned()));
    assert_eq!(send(&c, &path, &h, &body, ingress).await.0, 401);
}

async fn secrets_rotate_without_dropping_deliveries(b: Backend) {
    let c = ctx(b, Limits::default()).await;
    let i = integration(&c, Source::Github, "old-github-secret-01", json!({})).await;
    let path = format!("/webhooks/github/{}", i.id);
    let new = c
        .state
        .store
        .add_secret(
            &c.state.keyring,
            &switchyard_common::http::Actor::system("test"),
            &i.id,
            "new-github-secret-01",
        )
        .await
        .unwrap();
    c.state.ingress.forget(&i.id);
    for (n, s) in [(1, "old-github-secret-01"), (2, "new-github-secret-01")] {
        let (body, h) = signed(Source::Github, s, n);
        assert_eq!(
            send(&c, &path, &h, &body, IP).await.0,
            200,
            "both secrets verify during rotation"
        );
    }
    let old = c
        .state
        .store
        .get_integration(&i.id)
        .await
        .unwrap()
        .unwrap()
        .secrets
        .into_iter()
        .find(|s| s.id != new.id)
        .unwrap();
    c.state
        .store
        .retire_secret(
            &switchyard_common::http::Actor::system("test"),
            &i.id,
            &old.id,
        )
        .await
        .unwrap();
    c.state.ingress.forget(&i.id);
    let (body, h) = signed(Source::Github, "old-github-secret-01", 3);
    assert_eq!(
        send(&c, &path, &h, &body, IP).await.0,
        401,
        "a retired secret no longer verifies"
    );
    let e = c
        .state
        .store
        .retire_secret(
            &switchyard_common::http::Actor::system("test"),
            &i.id,
            &new.id,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        switchyard_common::error::Error::Conflict {
            code: "last-secret",
            ..
        }
    ));
    // At rest, the secret is not in the table in any readable form.
    let rows: Vec<String> = sqlx::query_scalar("SELECT ciphertext FROM or_integration_secrets")
        .fetch_all(
            &switchyard_common::db::Db::connect(&c._db.url, 1)
                .await
                .unwrap()
                .pool,
        )
        .await
        .unwrap();
    assert!(rows.iter().all(
        |r| !r.contains(&hex_of("new-github-secret-01")) && !r.contains("new-github-secret-01")
    ));
}

/// Probing integration ids costs the prober like failed signatures do, and an address over its
/// limit is refused before its body is read (a 2 MB body gets 429, not 413).
async fn probes_and_blocked_addresses_are_refused_early(b: Backend) {
    let c = ctx(
        b,
        Limits {
            unverified_per_minute: 2,
            body_limit: 1024,
            ..Limits::default()
        },
    )
    .await;
    let pd = integration(&c, Source::Pagerduty, "pd-secret-0123456789", json!({})).await;
    let from = "198.51.100.50:1000";
    let mut statuses = Vec::new();
    for n in 0..3 {
        statuses.push(
            send(
                &c,
                &format!("/webhooks/pagerduty/guess-{n}"),
                &[],
                b"{}",
                from,
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses, [404, 404, 429]);
    let big = vec![b'x'; 2 * 1024 * 1024];
    let path = format!("/webhooks/pagerduty/{}", pd.id);
    assert_eq!(send(&c, &path, &[], &big, from).await.0, 429);
    let (good, gh) = signed(Source::Pagerduty, "pd-secret-0123456789", 1);
    assert_eq!(
        send(&c, &path, &gh, &good, from).await.0,
        429,
        "blocked for the minute"
    );
    // Elsewhere the same body is simply too large, and the good delivery gets through.
    assert_eq!(send(&c, &path, &[], &big, IP).await.0, 413);
    assert_eq!(send(&c, &path, &gh, &good, IP).await.0, 200);
}

/// A body that breaks off mid-stream is a bad request, not "too large".
async fn a_broken_body_is_400_not_413(b: Backend) {
    let c = ctx(b, Limits::default()).await;
    let pd = integration(&c, Source::Pagerduty, "pd-secret-0123456789", json!({})).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"event\":".to_vec()),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "peer reset",
        )),
    ];
    let mut req = Request::post(format!("/webhooks/pagerduty/{}", pd.id))
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo::<SocketAddr>(IP.parse().unwrap()));
    let resp = app(c.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

/// Two admins retiring the last two secrets at the same moment leave one active.
async fn concurrent_retirements_keep_one_secret(b: Backend) {
    let c = ctx(b, Limits::default()).await;
    for round in 0..10 {
        let i = integration(&c, Source::Github, "first-secret-000001", json!({})).await;
        c.state
            .store
            .add_secret(
                &c.state.keyring,
                &switchyard_common::http::Actor::system("test"),
                &i.id,
                "second-secret-00001",
            )
            .await
            .unwrap();
        let ids: Vec<String> = c
            .state
            .store
            .get_integration(&i.id)
            .await
            .unwrap()
            .unwrap()
            .secrets
            .into_iter()
            .map(|s| s.id)
            .collect();
        let by = switchyard_common::http::Actor::system("test");
        let (a, b) = tokio::join!(
            c.state.store.retire_secret(&by, &i.id, &ids[0]),
            c.state.store.retire_secret(&by, &i.id, &ids[1])
        );
        assert_eq!(
            usize::from(a.is_ok()) + usize::from(b.is_ok()),
            1,
            "round {round}: exactly one retirement wins"
        );
        let left = c.state.store.get_integration(&i.id).await.unwrap().unwrap();
        assert_eq!(left.secrets.len(), 1, "round {round}");
    }
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

switchyard_common::on_both_backends!(
    probes_and_blocked_addresses_are_refused_early,
    a_broken_body_is_400_not_413,
    concurrent_retirements_keep_one_secret,
    every_source_verifies_over_http,
    ingress_ceiling_spares_senders_that_drop_4xx,
    failed_verification_floods_are_limited_per_address,
    secrets_rotate_without_dropping_deliveries,
    behind_a_trusted_proxy_the_forwarded_address_counts,
);

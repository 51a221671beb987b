//! Outbound subscriptions (ADR 0011), on PostgreSQL and SQLite through the real services: the
//! secret is shown once, patterns are checked, team tokens manage only their own team's
//! subscriptions, another tenant's answer 404, and rotation keeps the old secret signing for the
//! overlap.

mod stack;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use stack::{ADMIN, Options, Stack};
use switchyard_common::db::Backend;

struct Api<'a> {
    s: &'a Stack,
}

impl Api<'_> {
    async fn call(&self, token: &str, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.s.orch);
        self.s.call(token, m, url, body).await
    }

    async fn token(&self, org: &str, node: Option<&str>) -> String {
        let cs = &self.s.cs;
        let path = match node {
            Some(n) => format!("{cs}/api/v1/orgs/{org}/nodes/{n}/tokens"),
            None => format!("{cs}/api/v1/orgs/{org}/admin-tokens"),
        };
        self.s
            .must(
                Method::POST,
                path,
                Some(json!({"label": "t", "subject": format!("t@{org}.example")})),
            )
            .await["secret"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

async fn subscriptions_are_scoped_and_their_secrets_shown_once(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..Options::default()
        },
    )
    .await;
    for (org, teams) in [("acme", ["checkout", "search"]), ("beta", ["ops", "web"])] {
        s.must(
            Method::POST,
            format!("{}/api/v1/orgs", s.cs),
            Some(json!({"id": org, "name": org})),
        )
        .await;
        for t in teams {
            s.must(
                Method::POST,
                format!("{}/api/v1/orgs/{org}/nodes", s.cs),
                Some(json!({"id": t, "kind": "team", "name": t})),
            )
            .await;
        }
    }
    let api = Api { s: &s };
    let acme = api.token("acme", None).await;
    let beta = api.token("beta", None).await;
    let checkout = api.token("acme", Some("checkout")).await;
    let search = api.token("acme", Some("search")).await;
    let base = "/api/v1/orgs/acme/subscriptions";

    // An org admin subscribes to the org's run and incident events; the secret comes once.
    let (st, created) = api
        .call(
            &acme,
            Method::POST,
            base,
            Some(json!({"url": "http://127.0.0.1:9/hook",
            "event_types": ["run.*", "incident.opened"], "description": "ops bus"})),
        )
        .await;
    assert_eq!(st, 201, "{created}");
    let secret = created["secret"].as_str().unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert_eq!(raw.len(), 24);
    assert_eq!(created["teams"], Value::Null);
    assert_eq!(created["enabled"], true);
    let org_wide = created["id"].as_str().unwrap().to_owned();
    let one = format!("{base}/{org_wide}");
    let (st, read) = api.call(&acme, Method::GET, &one, None).await;
    assert_eq!(st, 200);
    assert!(
        read.get("secret").is_none(),
        "the secret is shown once: {read}"
    );
    assert!(!read.to_string().contains(secret));
    assert_eq!(read["secrets"].as_array().unwrap().len(), 1);

    // Bad input answers 422 with the field.
    for (body, pointer) in [
        (
            json!({"url": "http://127.0.0.1:9/", "event_types": ["runs.*"]}),
            "/event_types/0",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "event_types": []}),
            "/event_types",
        ),
        (
            json!({"url": "ftp://example.com/", "event_types": ["*"]}),
            "/url",
        ),
        (
            json!({"url": "https://user:pw@example.com/", "event_types": ["*"]}),
            "/url",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "event_types": ["*"], "teams": []}),
            "/teams",
        ),
    ] {
        let (st, p) = api
            .call(&acme, Method::POST, base, Some(body.clone()))
            .await;
        assert_eq!(
            (st, p["errors"][0]["pointer"].as_str()),
            (422, Some(pointer)),
            "{body} -> {p}"
        );
    }
    let (st, _) = api
        .call(
            &acme,
            Method::POST,
            base,
            Some(json!({"url": "http://x/", "event_types": ["*"], "secret": "mine"})),
        )
        .await;
    assert_eq!(st, 422, "unknown fields are refused");

    // A team token subscribes to its own team's events only.
    let (st, mine) = api
        .call(
            &checkout,
            Method::POST,
            base,
            Some(json!({"url": "http://127.0.0.1:9/team", "event_types": ["*"]})),
        )
        .await;
    assert_eq!((st, &mine["teams"]), (201, &json!(["checkout"])), "{mine}");
    let team_sub = format!("{base}/{}", mine["id"].as_str().unwrap());
    let (st, _) = api
        .call(
            &checkout,
            Method::POST,
            base,
            Some(json!({"url": "http://127.0.0.1:9/", "event_types": ["*"], "teams": ["search"]})),
        )
        .await;
    assert_eq!(st, 403);
    let (_, listed) = api.call(&checkout, Method::GET, base, None).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine["id"].as_str().unwrap()]);
    let (_, listed) = api.call(&acme, Method::GET, base, None).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "the org admin sees both"
    );
    // Not the org-wide one, nor another team's, nor another org's: 404 whatever the verb.
    for (token, path) in [
        (&checkout, &one),
        (&search, &team_sub),
        (&beta, &one),
        (&beta, &team_sub),
    ] {
        for m in [Method::GET, Method::DELETE] {
            let (st, _) = api.call(token, m.clone(), path, None).await;
            assert_eq!(st, 404, "{m} {path}");
        }
        let (st, _) = api
            .call(token, Method::PATCH, path, Some(json!({"enabled": false})))
            .await;
        assert_eq!(st, 404);
    }
    let (st, _) = api.call(&beta, Method::GET, base, None).await;
    assert_eq!(st, 404, "another org's list");
    let (st, _) = api
        .call(
            &checkout,
            Method::PATCH,
            &team_sub,
            Some(json!({"teams": null})),
        )
        .await;
    assert_eq!(st, 403, "a team token cannot widen its subscription");

    // Disable and re-enable; change the patterns.
    let (st, off) = api
        .call(
            &checkout,
            Method::PATCH,
            &team_sub,
            Some(json!({"enabled": false, "event_types": ["run.failed"]})),
        )
        .await;
    assert_eq!(
        (st, &off["enabled"], &off["event_types"]),
        (200, &json!(false), &json!(["run.failed"]))
    );

    // Rotation: the old secret keeps signing for the overlap (the default, without a body), or
    // stops at once.
    let (st, rotated) = api
        .call(&acme, Method::POST, &format!("{one}/rotate-secret"), None)
        .await;
    assert_eq!(st, 200, "{rotated}");
    assert_ne!(rotated["secret"].as_str().unwrap(), secret);
    let signing = rotated["secrets"].as_array().unwrap();
    assert_eq!(signing.len(), 2, "{rotated}");
    assert!(signing.iter().any(|s| s["expires_at"].is_string()));
    let (_, again) = api
        .call(
            &acme,
            Method::POST,
            &format!("{one}/rotate-secret"),
            Some(json!({"overlap_seconds": 0})),
        )
        .await;
    assert_eq!(again["secrets"].as_array().unwrap().len(), 1, "{again}");
    let (st, _) = api
        .call(
            &acme,
            Method::POST,
            &format!("{one}/rotate-secret"),
            Some(json!({"overlap_seconds": -1})),
        )
        .await;
    assert_eq!(st, 422);

    // Deleted: gone for everyone.
    let (st, _) = api.call(&checkout, Method::DELETE, &team_sub, None).await;
    assert_eq!(st, 204);
    let (st, _) = api.call(ADMIN, Method::GET, &team_sub, None).await;
    assert_eq!(st, 404);
}

switchyard_common::on_both_backends!(subscriptions_are_scoped_and_their_secrets_shown_once);

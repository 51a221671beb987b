//! Tenant isolation: every endpoint against every kind of caller.
//!
//! Callers, in column order: platform admin, own org admin, other org admin, own team token,
//! sibling team token (another team of the same org), other team token (another org), revoked
//! token, expired token, no token. Expectations per column: `A` allowed (2xx), `F` 403, `N` 404
//! (another tenant's resource looks absent), `U` 401.

mod common;

use std::collections::HashMap;

use axum::http::{Method, StatusCode};
use common::{ADMIN, TestApp};
use serde_json::{Value, json};
use switchyard_common::db::Backend;

const CALLERS: [&str; 9] = [
    "platform",
    "own_admin",
    "other_admin",
    "own_team",
    "sibling_team",
    "other_team",
    "revoked",
    "expired",
    "none",
];

struct Case {
    method: Method,
    /// `{c}` is replaced by the caller's name, `{key}` by per-caller fixtures.
    path: &'static str,
    body: Option<Value>,
    expect: &'static str,
}

fn case(method: Method, path: &'static str, body: Option<Value>, expect: &'static str) -> Case {
    assert_eq!(expect.len(), CALLERS.len(), "{path}");
    Case {
        method,
        path,
        body,
        expect,
    }
}

const ORG_ADMIN: &str = "AANFFNUUU";
const NODE_READ: &str = "AANANNUUU";
const INTERNAL: &str = "UUUUUUUUU";

fn cases() -> Vec<Case> {
    use Method as M;
    vec![
        case(M::GET, "/api/v1/me", None, "AAAAAAUUU"),
        case(M::GET, "/api/v1/config/me", None, "FFFAAAUUU"),
        case(
            M::POST,
            "/api/v1/orgs",
            Some(json!({"id": "org-{c}", "name": "x"})),
            "AFFFFFUUU",
        ),
        case(M::GET, "/api/v1/orgs", None, "AAAFFFUUU"),
        case(M::GET, "/api/v1/orgs/acme", None, ORG_ADMIN),
        case(
            M::POST,
            "/api/v1/orgs/acme/nodes",
            Some(json!({"id": "n-{c}", "kind": "team", "name": "x"})),
            ORG_ADMIN,
        ),
        case(M::GET, "/api/v1/orgs/acme/nodes", None, ORG_ADMIN),
        case(M::GET, "/api/v1/orgs/acme/nodes/checkout", None, NODE_READ),
        case(
            M::PATCH,
            "/api/v1/orgs/acme/nodes/checkout",
            Some(json!({"name": "Checkout {c}"})),
            ORG_ADMIN,
        ),
        case(
            M::DELETE,
            "/api/v1/orgs/acme/nodes/del-{c}",
            None,
            ORG_ADMIN,
        ),
        case(M::GET, "/api/v1/orgs/acme/archived-nodes", None, ORG_ADMIN),
        case(
            M::GET,
            "/api/v1/orgs/acme/nodes/checkout/config",
            None,
            NODE_READ,
        ),
        case(
            M::GET,
            "/api/v1/orgs/acme/nodes/checkout/config/layer",
            None,
            ORG_ADMIN,
        ),
        case(
            M::PUT,
            "/api/v1/orgs/acme/nodes/lay-{c}/config/layer",
            Some(json!({"agent": {"model": "{c}"}})),
            ORG_ADMIN,
        ),
        case(
            M::GET,
            "/api/v1/orgs/acme/nodes/checkout/config/history",
            None,
            ORG_ADMIN,
        ),
        case(
            M::POST,
            "/api/v1/orgs/acme/nodes/checkout/config/rollback",
            Some(json!({"version": 1})),
            ORG_ADMIN,
        ),
        case(M::GET, "/api/v1/orgs/acme/policy", None, ORG_ADMIN),
        case(
            M::PUT,
            "/api/v1/orgs/acme/policy",
            Some(json!({"protected_paths": ["/agent/prompts"]})),
            ORG_ADMIN,
        ),
        case(M::GET, "/api/v1/orgs/acme/changes", None, ORG_ADMIN),
        case(
            M::GET,
            "/api/v1/orgs/acme/changes/{approve}",
            None,
            ORG_ADMIN,
        ),
        case(
            M::POST,
            "/api/v1/orgs/acme/changes/{approve}/approve",
            None,
            ORG_ADMIN,
        ),
        case(
            M::POST,
            "/api/v1/orgs/acme/changes/{reject}/reject",
            None,
            ORG_ADMIN,
        ),
        case(
            M::POST,
            "/api/v1/orgs/acme/admin-tokens",
            Some(json!({"label": "{c}", "subject": "{c}@acme.example"})),
            ORG_ADMIN,
        ),
        case(M::GET, "/api/v1/orgs/acme/admin-tokens", None, ORG_ADMIN),
        case(
            M::DELETE,
            "/api/v1/orgs/acme/admin-tokens/{admin_token}",
            None,
            ORG_ADMIN,
        ),
        case(
            M::POST,
            "/api/v1/orgs/acme/nodes/checkout/tokens",
            Some(json!({"label": "{c}"})),
            ORG_ADMIN,
        ),
        case(
            M::GET,
            "/api/v1/orgs/acme/nodes/checkout/tokens",
            None,
            ORG_ADMIN,
        ),
        case(
            M::DELETE,
            "/api/v1/orgs/acme/nodes/search/tokens/{team_token}",
            None,
            ORG_ADMIN,
        ),
        case(M::GET, "/api/v1/orgs/acme/routing", None, ORG_ADMIN),
        // The shared-app attack: only the platform admin assigns a Slack workspace to an org.
        case(
            M::PUT,
            "/api/v1/orgs/acme/nodes/ws-{c}/config/layer",
            Some(json!({"routing": {"slack_team": "T-{c}"}})),
            "AFNFFNUUU",
        ),
        case(
            M::PUT,
            "/api/v1/orgs/acme/secrets/put-{c}",
            Some(json!({"value": "value-of-{c}"})),
            ORG_ADMIN,
        ),
        case(M::GET, "/api/v1/orgs/acme/secrets", None, ORG_ADMIN),
        case(
            M::DELETE,
            "/api/v1/orgs/acme/secrets/sec-{c}",
            None,
            ORG_ADMIN,
        ),
        case(
            M::GET,
            "/api/v1/internal/orgs/acme/secrets/sec-{c}",
            None,
            INTERNAL,
        ),
        case(M::GET, "/api/v1/orgs/acme/audit", None, ORG_ADMIN),
        case(M::GET, "/api/v1/orgs/acme/audit/verify", None, ORG_ADMIN),
        case(M::GET, "/api/v1/orgs/acme/agent-runs", None, "AANAANUUU"),
        case(
            M::GET,
            "/api/v1/orgs/acme/agent-runs/{run}",
            None,
            NODE_READ,
        ),
        case(
            M::POST,
            "/api/v1/orgs/acme/agent-runs/{fresh_run}/cancel",
            None,
            NODE_READ,
        ),
        case(
            M::POST,
            "/api/v1/internal/routing/lookup",
            Some(json!({"identifiers": {"service": "checkout-api"}})),
            INTERNAL,
        ),
        case(
            M::POST,
            "/api/v1/internal/agent-runs",
            Some(json!({"org_id": "acme", "team_id": "checkout", "trigger": {}})),
            INTERNAL,
        ),
        case(
            M::POST,
            "/api/v1/internal/auth/introspect",
            Some(json!({"token": "x"})),
            INTERNAL,
        ),
        case(
            M::GET,
            "/api/v1/internal/orgs/acme/nodes/checkout/config",
            None,
            INTERNAL,
        ),
        case(M::GET, "/api/v1/internal/agent-runs/{run}", None, INTERNAL),
        case(
            M::GET,
            "/api/v1/internal/orgs/acme/nodes/checkout/run-context",
            None,
            INTERNAL,
        ),
        case(M::GET, "/api/v1/internal/routing/version", None, INTERNAL),
        case(
            M::PATCH,
            "/api/v1/internal/agent-runs/{run}",
            Some(json!({"status": "running"})),
            INTERNAL,
        ),
    ]
}

fn substitute(template: &str, vars: &HashMap<&str, String>) -> String {
    let mut s = template.to_owned();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

async fn every_endpoint_against_every_caller(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.org("beta").await;
    app.node("acme", "checkout", None, "team").await;
    app.node("acme", "search", None, "team").await;
    app.node("beta", "ops", None, "team").await;
    app.layer(
        "acme",
        "checkout",
        json!({"agent": {"model": "m"}, "routing": {"service": "checkout-api"}}),
    )
    .await;

    let mut tokens: HashMap<&str, Option<String>> = HashMap::new();
    tokens.insert("platform", Some(ADMIN.into()));
    tokens.insert("own_admin", Some(app.token("acme", None, "own").await.0));
    tokens.insert(
        "other_admin",
        Some(app.token("beta", None, "other").await.0),
    );
    tokens.insert(
        "own_team",
        Some(app.token("acme", Some("checkout"), "own").await.0),
    );
    tokens.insert(
        "sibling_team",
        Some(app.token("acme", Some("search"), "sibling").await.0),
    );
    tokens.insert(
        "other_team",
        Some(app.token("beta", Some("ops"), "other").await.0),
    );
    let (revoked, revoked_id) = app.token("acme", None, "revoked").await;
    app.send(
        Method::DELETE,
        &format!("/api/v1/orgs/acme/admin-tokens/{revoked_id}"),
        Some(ADMIN),
        None,
        &[],
    )
    .await;
    tokens.insert("revoked", Some(revoked));
    let expired = app
        .state
        .store
        .create_token(
            &switchyard_config_service::store::Actor::system("test"),
            "acme",
            None,
            "expired",
            Some("expired@acme.example"),
            Some(1),
        )
        .await
        .unwrap();
    tokens.insert("expired", Some(expired.secret));
    tokens.insert("none", None);

    // Changes to approve and reject are proposed by an author who is none of the callers.
    let (author, _) = app.token("acme", None, "author").await;
    app.send(
        Method::PUT,
        "/api/v1/orgs/acme/policy",
        Some(ADMIN),
        Some(json!({"protected_paths": ["/agent/prompts"]})),
        &[],
    )
    .await;
    let jwt = app.service_jwt_of("agent-runner");
    let run = app
        .post(
            "/api/v1/internal/agent-runs",
            Some(&jwt),
            json!({"org_id": "acme", "team_id": "checkout", "trigger": {}}),
        )
        .await;
    let run_id = run.body["id"].as_str().unwrap().to_owned();

    let mut failures = Vec::new();
    for case in cases() {
        for (i, caller) in CALLERS.iter().enumerate() {
            // Fresh fixtures per caller, so an allowed call by one caller does not change what
            // the next one meets.
            let mut vars: HashMap<&str, String> = HashMap::new();
            vars.insert("c", caller.replace('_', "-"));
            vars.insert("run", run_id.clone());
            let c = vars["c"].clone();
            if case.path.contains("{fresh_run}") {
                let r = app
                    .post(
                        "/api/v1/internal/agent-runs",
                        Some(&jwt),
                        json!({"org_id": "acme", "team_id": "checkout", "trigger": {}}),
                    )
                    .await;
                vars.insert("fresh_run", r.body["id"].as_str().unwrap().to_owned());
            }
            if case.path.contains("del-") {
                app.node("acme", &format!("del-{c}"), None, "team").await;
            }
            if case.path.contains("lay-") {
                app.node("acme", &format!("lay-{c}"), None, "team").await;
            }
            if case.path.contains("/ws-") {
                app.node("acme", &format!("ws-{c}"), None, "team").await;
            }
            if case.path.contains("sec-") {
                let r = app
                    .send(
                        Method::PUT,
                        &format!("/api/v1/orgs/acme/secrets/sec-{c}"),
                        Some(ADMIN),
                        Some(json!({"value": "fixture-value"})),
                        &[],
                    )
                    .await;
                assert!(r.status.is_success(), "{}", r.body);
            }
            if case.path.contains("{approve}") || case.path.contains("{reject}") {
                let node = format!("chg-{c}-{}", case.path.len());
                app.node("acme", &node, None, "team").await;
                let r = app
                    .send(
                        Method::PUT,
                        &format!("/api/v1/orgs/acme/nodes/{node}/config/layer"),
                        Some(&author),
                        Some(json!({"agent": {"prompts": {"system": "x"}}})),
                        &[("if-match", "\"v0\"")],
                    )
                    .await;
                assert_eq!(r.status, StatusCode::ACCEPTED);
                let id = r.body["id"].as_str().unwrap().to_owned();
                vars.insert("approve", id.clone());
                vars.insert("reject", id);
            }
            if case.path.contains("{admin_token}") {
                vars.insert(
                    "admin_token",
                    app.token("acme", None, &format!("victim-{c}")).await.1,
                );
            }
            if case.path.contains("{team_token}") {
                vars.insert(
                    "team_token",
                    app.token("acme", Some("search"), &format!("victim-{c}"))
                        .await
                        .1,
                );
            }
            let path = substitute(case.path, &vars);
            let body = case
                .body
                .as_ref()
                .map(|b| serde_json::from_str(&substitute(&b.to_string(), &vars)).unwrap());
            let mut headers: Vec<(&str, String)> = Vec::new();
            if case.method == Method::PUT && path.ends_with("/config/layer") {
                headers.push(("if-match", "\"v0\"".into()));
            }
            let header_refs: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let token = tokens[caller].clone();
            let r = app
                .send(
                    case.method.clone(),
                    &path,
                    token.as_deref(),
                    body,
                    &header_refs,
                )
                .await;
            let expected = case.expect.as_bytes()[i] as char;
            let ok = match expected {
                'A' => r.status.is_success(),
                'F' => r.status == StatusCode::FORBIDDEN,
                'N' => r.status == StatusCode::NOT_FOUND,
                'U' => r.status == StatusCode::UNAUTHORIZED,
                _ => unreachable!(),
            };
            if !ok {
                failures.push(format!(
                    "{} {} as {caller}: expected {expected}, got {} {}",
                    case.method, path, r.status, r.body
                ));
            }
            if expected == 'N' {
                // A 404 for another tenant must not leak anything of that tenant.
                let text = r.body.to_string();
                assert!(
                    !text.contains("checkout-api") && !text.contains("\"m\""),
                    "{text}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} isolation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

switchyard_common::on_both_backends!(every_endpoint_against_every_caller);

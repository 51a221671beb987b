//! The REST API end to end (in-process, real router, fresh database per test), on PostgreSQL and
//! SQLite.

mod common;

use axum::http::{Method, StatusCode};
use common::{ADMIN, TestApp};
use serde_json::json;
use switchyard_common::db::Backend;

/// The README walkthrough: org, group, team, a layer on each level, the team's effective config
/// with explain, a team token reading its own config, a route lookup.
async fn walkthrough(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.node("acme", "payments", None, "group").await;
    app.node("acme", "checkout", Some("payments"), "team").await;
    assert_eq!(app.layer("acme", "acme", json!({"agent": {"provider": "offline", "model": "default"}, "routing": {"slack_team": "T0001"}})).await.status, StatusCode::OK);
    assert_eq!(app.layer("acme", "payments", json!({"agent": {"prompts": {"system": "You help the payments teams."}}, "quotas": {"concurrent_runs": 2}})).await.status, StatusCode::OK);
    assert_eq!(app.layer("acme", "checkout", json!({"agent": {"model": "large"}, "routing": {"slack_channel": "C0CHECKOUT", "github_repo": "acme/checkout"}, "integrations": {"slack": {"bot_token": {"secret": "slack-bot"}}}})).await.status, StatusCode::OK);

    let eff = app
        .get(
            "/api/v1/orgs/acme/nodes/checkout/config?explain=true",
            Some(ADMIN),
        )
        .await;
    assert_eq!(eff.status, StatusCode::OK);
    assert_eq!(
        eff.body["config"]["agent"],
        json!({"provider": "offline", "model": "large", "prompts": {"system": "You help the payments teams."}})
    );
    assert_eq!(eff.body["explain"]["/agent/model"], "checkout");
    assert_eq!(eff.body["explain"]["/agent/provider"], "acme");
    assert_eq!(eff.body["explain"]["/quotas/concurrent_runs"], "payments");
    let etag = eff.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, eff.body["etag"]);
    // Conditional GET.
    let again = app
        .send(
            Method::GET,
            "/api/v1/orgs/acme/nodes/checkout/config",
            Some(ADMIN),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    // A team token reads its own config, with integration secrets redacted.
    let (team, _) = app.token("acme", Some("checkout"), "agents").await;
    let mine = app.get("/api/v1/config/me", Some(&team)).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(
        mine.body["config"]["integrations"]["slack"]["bot_token"],
        "<redacted>"
    );
    assert_eq!(mine.body["config"]["agent"]["model"], "large");
    let me = app.get("/api/v1/me", Some(&team)).await;
    assert_eq!(
        (me.body["kind"].as_str(), me.body["node_id"].as_str()),
        (Some("team"), Some("checkout"))
    );

    // Route lookup (service JWT): the channel, and the org from the workspace.
    let jwt = app.service_jwt();
    let m = app
        .post(
            "/api/v1/internal/routing/lookup",
            Some(&jwt),
            json!({"identifiers": {"slack_team": "T0001", "slack_channel": "C0CHECKOUT"}}),
        )
        .await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
    assert_eq!(
        m.body,
        json!({"org_id": "acme", "team_node_id": "checkout", "node_kind": "team", "matched_by": "slack_channel", "matched_value": "C0CHECKOUT"})
    );
    let m = app
        .post(
            "/api/v1/internal/routing/lookup",
            Some(&jwt),
            json!({"org_id": "acme", "identifiers": {"github_repo": "Acme/Checkout"}}),
        )
        .await;
    assert_eq!(m.body["team_node_id"], "checkout");
    let none = app
        .post(
            "/api/v1/internal/routing/lookup",
            Some(&jwt),
            json!({"identifiers": {"service": "unknown"}}),
        )
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert_eq!(none.headers["content-type"], "application/problem+json");

    let routes = app
        .get(
            "/api/v1/orgs/acme/routing?kind=github_repo&value=ACME/checkout",
            Some(ADMIN),
        )
        .await;
    assert_eq!(routes.body[0]["node_id"], "checkout");
    let tree = app.get("/api/v1/orgs/acme/nodes", Some(ADMIN)).await;
    assert_eq!(tree.body["children"][0]["children"][0]["id"], "checkout");
}

async fn if_match_is_required_and_checked(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.node("acme", "t", None, "team").await;
    let path = "/api/v1/orgs/acme/nodes/t/config/layer";
    let body = json!({"agent": {"model": "a"}});
    let r = app
        .send(Method::PUT, path, Some(ADMIN), Some(body.clone()), &[])
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_REQUIRED);
    let r = app
        .send(
            Method::PUT,
            path,
            Some(ADMIN),
            Some(body.clone()),
            &[("if-match", "\"v0\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["etag"], "\"v1\"");
    // Another writer still holding v0 loses.
    let r = app
        .send(
            Method::PUT,
            path,
            Some(ADMIN),
            Some(json!({})),
            &[("if-match", "\"v0\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.body["type"], "urn:switchyard:problem:precondition-failed");
    let r = app
        .send(
            Method::PUT,
            path,
            Some(ADMIN),
            Some(json!({})),
            &[("if-match", "garbage")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);

    // History and rollback.
    app.send(
        Method::PUT,
        path,
        Some(ADMIN),
        Some(json!({"agent": {"model": "b"}})),
        &[("if-match", "\"v1\"")],
    )
    .await;
    let h = app
        .get("/api/v1/orgs/acme/nodes/t/config/history", Some(ADMIN))
        .await;
    assert_eq!(h.body[0]["version"], 2);
    assert_eq!(
        h.body[0]["diff"][0],
        json!({"op": "replace", "path": "/agent/model", "from": "a", "value": "b"})
    );
    let r = app
        .post(
            "/api/v1/orgs/acme/nodes/t/config/rollback",
            Some(ADMIN),
            json!({"version": 1}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["version"].as_i64()),
        (StatusCode::OK, Some(3))
    );
    assert_eq!(r.body["layer"], json!({"agent": {"model": "a"}}));
}

async fn bad_input_gets_clear_problems(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.node("acme", "t", None, "team").await;
    let r = app
        .post(
            "/api/v1/orgs",
            Some(ADMIN),
            json!({"id": "Bad Id", "name": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["pointer"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("/id"))
    );
    let r = app
        .post("/api/v1/orgs", Some(ADMIN), json!({"name": "x"}))
        .await;
    assert_eq!(
        (r.status, r.body["pointer"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("/id"))
    );
    let r = app
        .post("/api/v1/orgs", Some(ADMIN), json!({"id": "ok", "name": 5}))
        .await;
    assert_eq!(r.body["pointer"], "/name");
    let r = app
        .post(
            "/api/v1/orgs",
            Some(ADMIN),
            json!({"id": "acme", "name": "dup"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["type"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("urn:switchyard:problem:org-exists")
        )
    );
    let r = app
        .post(
            "/api/v1/orgs/acme/nodes",
            Some(ADMIN),
            json!({"id": "x", "kind": "squad", "name": "x"}),
        )
        .await;
    assert_eq!(r.body["pointer"], "/kind");
    let r = app.send(Method::PUT, "/api/v1/orgs/acme/nodes/t/config/layer", Some(ADMIN), Some(json!({"quotas": {"concurrent_runs": "many"}, "pipelines": {"ingest": {"schedule": "every day"}}})), &[("if-match", "\"v0\"")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let pointers: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert!(
        pointers.contains(&"/quotas/concurrent_runs")
            && pointers.contains(&"/pipelines/ingest/schedule"),
        "{pointers:?}"
    );

    // Not JSON, wrong content type, too large, unknown endpoint.
    let req = axum::http::Request::post("/api/v1/orgs")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{not json"))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let req = axum::http::Request::post("/api/v1/orgs")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(axum::body::Body::from("id=x"))
        .unwrap();
    assert_eq!(
        tower::ServiceExt::oneshot(app.router.clone(), req)
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    let huge = json!({"notifications": {"blob": "x".repeat(2 * 1024 * 1024)}});
    let r = app
        .send(
            Method::PUT,
            "/api/v1/orgs/acme/nodes/t/config/layer",
            Some(ADMIN),
            Some(huge),
            &[("if-match", "\"v0\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = app.get("/api/v1/nope", Some(ADMIN)).await;
    assert_eq!(
        (r.status, r.headers["content-type"].to_str().unwrap()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
    let r = app
        .get("/api/v1/orgs/acme/audit?since=yesterday", Some(ADMIN))
        .await;
    assert_eq!(r.body["pointer"], "/since");
    let r = app
        .get(
            "/api/v1/orgs/acme/nodes/t/config?explain=maybe",
            Some(ADMIN),
        )
        .await;
    assert_eq!(
        (r.status, r.headers["content-type"].to_str().unwrap()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    assert!(r.body["detail"].as_str().unwrap().contains("query"));
    let r = app
        .get("/api/v1/orgs/acme/audit?limit=-1", Some(ADMIN))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn routing_conflict_names_the_owner(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.node("acme", "checkout", None, "team").await;
    app.node("acme", "search", None, "team").await;
    assert_eq!(
        app.layer(
            "acme",
            "checkout",
            json!({"routing": {"pagerduty_service": "PSVC1"}})
        )
        .await
        .status,
        StatusCode::OK
    );
    let r = app
        .layer(
            "acme",
            "search",
            json!({"routing": {"pagerduty_service": ["PSVC2", "PSVC1"]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["type"], "urn:switchyard:problem:routing-conflict");
    assert_eq!(r.body["owner"], "checkout");
    assert!(r.body["detail"].as_str().unwrap().contains("checkout"));
    // Nothing of the refused write stuck.
    let routes = app
        .get("/api/v1/orgs/acme/routing?value=PSVC2", Some(ADMIN))
        .await;
    assert_eq!(routes.body, json!([]));
}

async fn protected_changes_need_another_admin(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.node("acme", "t", None, "team").await;
    let (alice, _) = app.token("acme", None, "alice").await;
    let (bob, _) = app.token("acme", None, "bob").await;
    let r = app
        .send(
            Method::PUT,
            "/api/v1/orgs/acme/policy",
            Some(&alice),
            Some(json!({"protected_paths": ["/agent/prompts", "/agent/tools"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .send(
            Method::PUT,
            "/api/v1/orgs/acme/policy",
            Some(&alice),
            Some(json!({"protected_paths": ["nope"]})),
            &[],
        )
        .await;
    assert_eq!(r.body["pointer"], "/protected_paths/0");

    let path = "/api/v1/orgs/acme/nodes/t/config/layer";
    let r = app
        .send(
            Method::PUT,
            path,
            Some(&alice),
            Some(json!({"agent": {"tools": ["kubernetes_get"]}})),
            &[("if-match", "\"v0\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    let change = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(path, Some(ADMIN)).await.body["version"], 0);
    let pending = app
        .get("/api/v1/orgs/acme/changes?status=pending", Some(&bob))
        .await;
    assert_eq!(pending.body.as_array().unwrap().len(), 1);

    let own = app
        .post(
            &format!("/api/v1/orgs/acme/changes/{change}/approve"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get(path, Some(ADMIN)).await.body["version"], 0);
    let ok = app
        .send(
            Method::POST,
            &format!("/api/v1/orgs/acme/changes/{change}/approve"),
            Some(&bob),
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let layer = app.get(path, Some(ADMIN)).await;
    assert_eq!(
        layer.body["layer"],
        json!({"agent": {"tools": ["kubernetes_get"]}})
    );
    assert!(
        layer.body["approved_by"]
            .as_str()
            .unwrap()
            .starts_with("org-admin:")
    );
    // An unprotected change applies directly.
    let r = app
        .send(
            Method::PUT,
            path,
            Some(&alice),
            Some(json!({"agent": {"tools": ["kubernetes_get"], "model": "m"}})),
            &[("if-match", "\"v1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let audit = app
        .get(
            "/api/v1/orgs/acme/audit?action=config.change_approved",
            Some(ADMIN),
        )
        .await;
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 1);
    let v = app.get("/api/v1/orgs/acme/audit/verify", Some(ADMIN)).await;
    assert_eq!(v.body["ok"], true);
}

async fn internal_endpoints_need_a_service_jwt(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.node("acme", "t", None, "team").await;
    let (org_admin, _) = app.token("acme", None, "a").await;
    let body = json!({"org_id": "acme", "team_id": "t", "trigger": {"source": "github"}, "idempotency_key": "evt-1"});
    for token in [
        None,
        Some(ADMIN),
        Some(org_admin.as_str()),
        Some("not-a-jwt"),
    ] {
        let r = app
            .post("/api/v1/internal/agent-runs", token, body.clone())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "token {token:?}");
    }
    let wrong_aud = app.service_key.mint("orchestrator", "agent-runner", 60);
    assert_eq!(
        app.post(
            "/api/v1/internal/agent-runs",
            Some(&wrong_aud),
            body.clone()
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let other_key =
        switchyard_common::auth::ServiceKey::generate().mint("orchestrator", "config-service", 60);
    assert_eq!(
        app.post(
            "/api/v1/internal/agent-runs",
            Some(&other_key),
            body.clone()
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );

    let jwt = app.service_jwt_of("agent-runner");
    // Running from the start only with the runner that executes it (and holds its lease).
    let mut running = body.clone();
    running["running"] = json!(true);
    let r = app
        .post("/api/v1/internal/agent-runs", Some(&jwt), running)
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["pointer"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("/running")),
        "{}",
        r.body
    );
    let r = app
        .post("/api/v1/internal/agent-runs", Some(&jwt), body.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let r2 = app
        .post("/api/v1/internal/agent-runs", Some(&jwt), body.clone())
        .await;
    assert_eq!(
        (r2.status, r2.body["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    let patch = |status: &str| json!({"status": status});
    let r = app
        .send(
            Method::PATCH,
            &format!("/api/v1/internal/agent-runs/{id}"),
            Some(&jwt),
            Some(patch("succeeded")),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app
        .send(
            Method::PATCH,
            &format!("/api/v1/internal/agent-runs/{id}"),
            Some(&jwt),
            Some(patch("running")),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .send(
            Method::PATCH,
            &format!("/api/v1/internal/agent-runs/{id}"),
            Some(&jwt),
            Some(json!({"status": "succeeded", "summary": "done"})),
            &[],
        )
        .await;
    assert_eq!(r.body["status"], "succeeded");
    let r = app
        .send(
            Method::PATCH,
            &format!("/api/v1/internal/agent-runs/{id}"),
            Some(&jwt),
            Some(patch("exploded")),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let list = app
        .get("/api/v1/orgs/acme/agent-runs?status=succeeded", Some(ADMIN))
        .await;
    assert_eq!(list.body["items"][0]["summary"], "done");
}

/// The batch endpoint answers each item with the status its single-run call would answer, and
/// takes no more than 1,000 items; only the agent-runner may call it.
async fn run_batches_answer_per_item(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.node("acme", "t", None, "team").await;
    let jwt = app.service_jwt_of("agent-runner");
    let run = |key: &str, team: &str| json!({"org_id": "acme", "team_id": team, "trigger": {}, "idempotency_key": key});
    let r = app
        .post("/api/v1/internal/agent-runs", Some(&jwt), run("old", "t"))
        .await;
    let old = r.body["id"].as_str().unwrap().to_owned();
    let batch = json!({
        "create": [run("new", "t"), run("old", "t"), run("x", "nope"),
                   {"org_id": "acme", "team_id": "t", "trigger": {}, "running": true}],
        "update": [{"id": old, "update": {"status": "running"}},
                   {"id": old, "update": {"status": "exploded"}},
                   {"id": "missing", "update": {"status": "running"}},
                   {"id": old, "update": {"status": "succeeded", "summary": "done"}}],
    });
    let r = app
        .post(
            "/api/v1/internal/agent-runs/batch",
            Some(&jwt),
            batch.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let statuses = |k: &str| -> Vec<i64> {
        r.body[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["status"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(statuses("create"), [201, 200, 422, 422]);
    assert_eq!(statuses("update"), [200, 422, 404, 200]);
    assert_eq!(r.body["create"][1]["run_id"], old.as_str());
    assert!(
        r.body["create"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("node nope does not exist")
    );
    assert!(
        r.body["create"][3]["detail"]
            .as_str()
            .unwrap()
            .starts_with("/running: ")
    );
    let run_of = app
        .get(&format!("/api/v1/orgs/acme/agent-runs/{old}"), Some(ADMIN))
        .await;
    assert_eq!(
        (
            run_of.body["status"].as_str(),
            run_of.body["summary"].as_str()
        ),
        (Some("succeeded"), Some("done"))
    );

    let too_many = json!({"create": vec![run("k", "t"); 1001]});
    let r = app
        .post("/api/v1/internal/agent-runs/batch", Some(&jwt), too_many)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let orchestrator = app.service_jwt_of("orchestrator");
    let r = app
        .post(
            "/api/v1/internal/agent-runs/batch",
            Some(&orchestrator),
            batch,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn health_and_readiness(b: Backend) {
    let app = TestApp::new(b).await;
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
    let r = app.get("/readyz", None).await;
    assert_eq!(
        (r.status, r.body["database"].as_str()),
        (StatusCode::OK, Some(b.name()))
    );
    assert!(
        app.get("/metrics", None)
            .await
            .body
            .as_str()
            .unwrap()
            .contains("http_requests_total")
    );
    let r = app.get("/healthz", None).await;
    assert!(r.headers.contains_key("x-request-id"));
    // The database goes away: readiness fails, and API calls answer 503 with Retry-After.
    app.state.store.db().pool.close().await;
    assert_eq!(
        app.get("/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let r = app.get("/api/v1/orgs", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers["retry-after"], "5");
}

async fn internal_views_for_other_services(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.node("acme", "t", None, "team").await;
    let jwt = app.service_jwt();
    let v0 = app
        .get("/api/v1/internal/routing/version", Some(&jwt))
        .await
        .body["version"]
        .as_i64()
        .unwrap();
    app.layer(
        "acme",
        "t",
        json!({"routing": {"service": "api"}, "integrations": {"slack": {"bot_token": {"secret": "slack-bot"}}}}),
    )
    .await;
    let v1 = app
        .get("/api/v1/internal/routing/version", Some(&jwt))
        .await
        .body["version"]
        .as_i64()
        .unwrap();
    assert!(v1 > v0, "routing changes move the version");
    // The agent-runner gets the unredacted config; a team token does not.
    let cfg = app
        .get("/api/v1/internal/orgs/acme/nodes/t/config", Some(&jwt))
        .await;
    assert_eq!(
        cfg.body["config"]["integrations"]["slack"]["bot_token"],
        json!({"secret": "slack-bot"})
    );
    let (team, token_id) = app.token("acme", Some("t"), "agents").await;
    let i = app
        .post(
            "/api/v1/internal/auth/introspect",
            Some(&jwt),
            json!({"token": team}),
        )
        .await;
    assert_eq!(
        i.body,
        json!({"kind": "team", "org_id": "acme", "node_id": "t", "token_id": token_id, "subject": "agents@acme.example"})
    );
    let bad = app
        .post(
            "/api/v1/internal/auth/introspect",
            Some(&jwt),
            json!({"token": "syt_nope"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let d = app
        .send(
            Method::DELETE,
            "/api/v1/orgs/acme/nodes/t",
            Some(ADMIN),
            None,
            &[],
        )
        .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.body);
    let v2 = app
        .get("/api/v1/internal/routing/version", Some(&jwt))
        .await
        .body["version"]
        .as_i64()
        .unwrap();
    assert!(v2 > v1, "deleting a node with routes moves the version");
    let gone = app
        .post(
            "/api/v1/internal/auth/introspect",
            Some(&jwt),
            json!({"token": team}),
        )
        .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
}

/// Each internal endpoint answers only the services on its allow-list (403 for another service),
/// and no service can pose as another (401): the agent-runner holds only its own key.
async fn internal_endpoints_check_the_calling_service(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    let runner = app.service_jwt_of("agent-runner");
    let orchestrator = app.service_jwt_of("orchestrator");
    let lookup = json!({"identifiers": {"service": "api"}});
    let r = app
        .post(
            "/api/v1/internal/routing/lookup",
            Some(&runner),
            lookup.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("agent-runner"));
    let r = app
        .post(
            "/api/v1/internal/routing/lookup",
            Some(&orchestrator),
            lookup.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let audit = json!({"entries": []});
    assert_eq!(
        app.post("/api/v1/internal/audit", Some(&runner), audit.clone())
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post("/api/v1/internal/audit", Some(&orchestrator), audit)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/internal/routing/version", Some(&runner))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // The agent-runner's own key cannot sign as the orchestrator.
    let posing = app
        .service_key
        .only("agent-runner")
        .mint("orchestrator", "config-service", 60);
    let r = app
        .post("/api/v1/internal/routing/lookup", Some(&posing), lookup)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// The org secrets store: write-only, sealed at rest, audited without values; config refers to
/// secrets and never holds a literal; only the agent-runner reads values.
async fn secrets_are_write_only_and_referenced(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.node("acme", "t", None, "team").await;
    let value = "xoxb-1234567890-very-secret";
    let (alice, _) = app.token("acme", None, "alice").await;
    let put = |v: &str| {
        let app = &app;
        let (v, alice) = (v.to_owned(), alice.clone());
        async move {
            app.send(
                Method::PUT,
                "/api/v1/orgs/acme/secrets/slack-bot",
                Some(&alice),
                Some(json!({"value": v})),
                &[],
            )
            .await
        }
    };
    let r = put(value).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["name"], "slack-bot");
    let first = r.body["fingerprint"].as_str().unwrap().to_owned();
    let r = put("xoxb-rotated-value-0001").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.body["fingerprint"], first.as_str());
    assert_eq!(put(value).await.status, StatusCode::OK);
    let bad = app
        .send(
            Method::PUT,
            "/api/v1/orgs/acme/secrets/Bad_Name",
            Some(&alice),
            Some(json!({"value": "x"})),
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let list = app.get("/api/v1/orgs/acme/secrets", Some(&alice)).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert!(!list.body.to_string().contains(value));

    // Config refers to it; a literal at a known secret path is refused with its path.
    let r = app
        .layer(
            "acme",
            "t",
            json!({"integrations": {"slack": {"bot_token": value}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.body["errors"][0]["pointer"],
        "/integrations/slack/bot_token"
    );
    let r = app
        .layer("acme", "t", json!({"agent": {"api_key": "sk-literal"}}))
        .await;
    assert_eq!(r.body["errors"][0]["pointer"], "/agent/api_key");
    let r = app
        .layer("acme", "t", json!({"integrations": {"slack": {"bot_token": {"secret": "slack-bot"}}}, "agent": {"api_key": {"secret": "llm"}}}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Only the agent-runner reads the value.
    let path = "/api/v1/internal/orgs/acme/secrets/slack-bot";
    let r = app
        .get(path, Some(&app.service_jwt_of("agent-runner")))
        .await;
    assert_eq!(
        (r.status, r.body["value"].as_str()),
        (StatusCode::OK, Some(value))
    );
    assert_eq!(
        app.get(path, Some(&app.service_jwt_of("orchestrator")))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(path, Some(&alice)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get(
            "/api/v1/internal/orgs/acme/secrets/nope",
            Some(&app.service_jwt_of("agent-runner"))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // A secret shared with the orchestrator only (a Slack subscription's incoming-webhook URL):
    // the orchestrator reads it, the agent-runner does not; an unknown reader is refused.
    let hook = "https://hooks.slack.com/services/T0/B0/secretpart";
    let r = app
        .send(
            Method::PUT,
            "/api/v1/orgs/acme/secrets/slack-hook",
            Some(&alice),
            Some(json!({"value": hook, "readers": ["orchestrator"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["readers"], json!(["orchestrator"]));
    let path = "/api/v1/internal/orgs/acme/secrets/slack-hook";
    let r = app
        .get(path, Some(&app.service_jwt_of("orchestrator")))
        .await;
    assert_eq!(
        (r.status, r.body["value"].as_str()),
        (StatusCode::OK, Some(hook))
    );
    assert_eq!(
        app.get(path, Some(&app.service_jwt_of("agent-runner")))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = app
        .send(
            Method::PUT,
            "/api/v1/orgs/acme/secrets/slack-hook",
            Some(&alice),
            Some(json!({"value": hook, "readers": ["everyone"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["pointer"], "/readers/0");

    // A run's context carries the values the team's config refers to (`llm` is not stored:
    // absent), for the agent-runner only.
    let path = "/api/v1/internal/orgs/acme/nodes/t/run-context";
    let r = app
        .get(path, Some(&app.service_jwt_of("agent-runner")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["secrets"], json!({"slack-bot": value}));
    assert_eq!(
        r.body["config"]["agent"]["api_key"],
        json!({"secret": "llm"})
    );
    assert_eq!(
        r.body["budgets"],
        json!({"team": {"limit": null, "used_today": 0}, "org": {"limit": null, "used_today": 0}})
    );
    let r = app
        .send(
            Method::PUT,
            "/api/v1/orgs/acme/secrets/llm",
            Some(&alice),
            Some(json!({"value": "sk-model"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .get(path, Some(&app.service_jwt_of("agent-runner")))
        .await;
    assert_eq!(
        r.body["secrets"],
        json!({"slack-bot": value, "llm": "sk-model"})
    );
    assert_eq!(
        app.get(path, Some(&app.service_jwt_of("orchestrator")))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // The audit log records each change, never the value; nor does the table hold it readably.
    let audit = app
        .get(
            "/api/v1/orgs/acme/audit?target=secret/slack-bot",
            Some(ADMIN),
        )
        .await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["secret.updated", "secret.updated", "secret.created"]
    );
    assert!(!audit.body.to_string().contains(value));
    let rows: Vec<String> = sqlx::query_scalar("SELECT ciphertext FROM cs_secrets")
        .fetch_all(&app.state.store.db().pool)
        .await
        .unwrap();
    assert!(rows.iter().all(|c| !c.contains(value)));

    let del = |who: String| {
        let app = &app;
        async move {
            app.send(
                Method::DELETE,
                "/api/v1/orgs/acme/secrets/slack-bot",
                Some(&who),
                None,
                &[],
            )
            .await
            .status
        }
    };
    assert_eq!(del(alice.clone()).await, StatusCode::NO_CONTENT);
    assert_eq!(del(alice).await, StatusCode::NOT_FOUND);
}

/// Four-eyes compares people: a second token of the author cannot approve; the policy itself is
/// protected while it protects anything; a null that deletes a protected value touches it.
async fn four_eyes_are_per_person(b: Backend) {
    let app = TestApp::new(b).await;
    app.org("acme").await;
    app.node("acme", "t", None, "team").await;
    let (alice, _) = app.token("acme", None, "alice").await;
    let (alice_again, _) = app
        .token_for("acme", None, "alice-laptop", "alice@acme.example")
        .await;
    let (bob, _) = app.token("acme", None, "bob").await;
    // An admin token needs a subject.
    let r = app
        .post(
            "/api/v1/orgs/acme/admin-tokens",
            Some(ADMIN),
            json!({"label": "nobody"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["pointer"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("/subject"))
    );
    let me = app.get("/api/v1/me", Some(&alice_again)).await;
    assert_eq!(me.body["subject"], "alice@acme.example");

    let policy = json!({"protected_paths": ["/agent/prompts"]});
    let r = app
        .send(
            Method::PUT,
            "/api/v1/orgs/acme/policy",
            Some(&alice),
            Some(policy.clone()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "no policy yet: applies at once");
    app.layer(
        "acme",
        "acme",
        json!({"agent": {"prompts": {"system": "be careful"}}}),
    )
    .await;

    // Deleting the inherited prompts with a null needs approval too.
    let path = "/api/v1/orgs/acme/nodes/t/config/layer";
    let r = app
        .send(
            Method::PUT,
            path,
            Some(&alice),
            Some(json!({"agent": null})),
            &[("if-match", "\"v0\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["author_subject"], "alice@acme.example");
    let change = r.body["id"].as_str().unwrap().to_owned();
    let approve = |token: String, id: String| {
        let app = &app;
        async move {
            app.post(
                &format!("/api/v1/orgs/acme/changes/{id}/approve"),
                Some(&token),
                json!({}),
            )
            .await
        }
    };
    let r = approve(alice_again.clone(), change.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("alice@acme.example")
    );
    assert_eq!(approve(bob.clone(), change).await.status, StatusCode::OK);

    // Switching four-eyes off is itself a protected change.
    let r = app
        .send(
            Method::PUT,
            "/api/v1/orgs/acme/policy",
            Some(&alice),
            Some(json!({"protected_paths": []})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["kind"], "policy");
    let change = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/api/v1/orgs/acme/policy", Some(&bob)).await.body,
        policy
    );
    assert_eq!(
        approve(alice_again, change.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/orgs/acme/policy", Some(&bob)).await.body,
        policy
    );
    let r = approve(bob.clone(), change).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        app.get("/api/v1/orgs/acme/policy", Some(&bob)).await.body,
        json!({"protected_paths": []})
    );
    // The audit log names the people, not only their tokens.
    let audit = app
        .get(
            "/api/v1/orgs/acme/audit?action=config.change_approved",
            Some(&bob),
        )
        .await;
    let actors: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors.len(), 2, "{actors:?}");
    assert!(
        actors
            .iter()
            .all(|a| a.starts_with("bob@acme.example (org-admin:")),
        "{actors:?}"
    );
}

switchyard_common::on_both_backends!(
    internal_endpoints_check_the_calling_service,
    run_batches_answer_per_item,
    secrets_are_write_only_and_referenced,
    four_eyes_are_per_person,
    internal_views_for_other_services,
    walkthrough,
    if_match_is_required_and_checked,
    bad_input_gets_clear_problems,
    routing_conflict_names_the_owner,
    protected_changes_need_another_admin,
    internal_endpoints_need_a_service_jwt,
    health_and_readiness,
);

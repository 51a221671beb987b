//! The agent-runner against a real config-service (SQLite): idempotent runs, recorded outcomes,
//! and who may read a run.

use serde_json::{Value, json};
use switchyard_common::auth::ServiceKey;
use switchyard_common::db::Backend;
use switchyard_common::db::testing::TestDb;

const ADMIN: &str = "runner-test-admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_idempotent_recorded_and_scoped() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let key = ServiceKey::generate();
    let cs_state = switchyard_config_service::AppState::new(
        switchyard_config_service::store::Store::new(db.connect().await.unwrap()),
        Some(ADMIN.into()),
        key.clone(),
        switchyard_common::crypto::Keyring::parse(
            &switchyard_common::crypto::Keyring::generate_spec("t"),
        )
        .unwrap(),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cs = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(switchyard_config_service::serve(
        l,
        cs_state,
        std::future::pending(),
    ));
    let replies = switchyard_agent_runner::ReplySettings {
        slack_api_base: "http://127.0.0.1:9".into(),
        github_api_base: "http://127.0.0.1:9".into(),
        run_deadline_seconds: 10,
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runner = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(switchyard_agent_runner::serve(
        l,
        switchyard_agent_runner::AppState::new(&cs, replies, Some(ADMIN.into()), key.clone()),
        std::future::pending(),
    ));

    let http = reqwest::Client::new();
    let admin = |m: reqwest::Method, url: String, body: Value| {
        http.request(m, url).bearer_auth(ADMIN).json(&body).send()
    };
    admin(
        reqwest::Method::POST,
        format!("{cs}/api/v1/orgs"),
        json!({"id": "acme", "name": "Acme"}),
    )
    .await
    .unwrap();
    for t in ["checkout", "search"] {
        admin(
            reqwest::Method::POST,
            format!("{cs}/api/v1/orgs/acme/nodes"),
            json!({"id": t, "kind": "team", "name": t}),
        )
        .await
        .unwrap();
    }
    let jwt = key.mint("orchestrator", "agent-runner", 60);
    let req = json!({"org_id": "acme", "team_id": "checkout", "trigger": {"source": "pagerduty", "event_type": "incident.triggered"}, "reply_to": null, "idempotency_key": "event-1"});
    let first: Value = http
        .post(format!("{runner}/api/v1/run"))
        .bearer_auth(&jwt)
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = http
        .post(format!("{runner}/api/v1/run"))
        .bearer_auth(&jwt)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status().as_u16(), 202);
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        (first["started"].as_bool(), second["started"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(first["run_id"], second["run_id"]);
    let id = first["run_id"].as_str().unwrap();

    // The run ends succeeded, with the offline provider's summary.
    let mut run = Value::Null;
    for _ in 0..200 {
        run = http
            .get(format!("{runner}/api/v1/runs/{id}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if run["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        run["summary"]
            .as_str()
            .unwrap()
            .contains("pagerduty incident.triggered for team checkout")
    );

    // Its team reads it; another team, and a user token calling the run endpoint, do not.
    let token = |node: &'static str| {
        let http = http.clone();
        let cs = cs.clone();
        async move {
            let v: Value = http
                .post(format!("{cs}/api/v1/orgs/acme/nodes/{node}/tokens"))
                .bearer_auth(ADMIN)
                .json(&json!({"label": "t"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["secret"].as_str().unwrap().to_owned()
        }
    };
    let own = token("checkout").await;
    let other = token("search").await;
    assert_eq!(
        http.get(format!("{runner}/api/v1/runs/{id}"))
            .bearer_auth(&own)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        http.get(format!("{runner}/api/v1/runs/{id}"))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        http.post(format!("{runner}/api/v1/run"))
            .bearer_auth(&own)
            .json(&req)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        http.post(format!("{runner}/api/v1/run"))
            .json(&req)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );

    // A run for a team whose reply target cannot be reached fails with the reason recorded.
    let req2 = json!({"org_id": "acme", "team_id": "checkout", "trigger": {}, "reply_to": {"kind": "slack", "channel": "C1"}, "idempotency_key": "event-2"});
    let r: Value = http
        .post(format!("{runner}/api/v1/run"))
        .bearer_auth(&jwt)
        .json(&req2)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id2 = r["run_id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        run = http
            .get(format!("{runner}/api/v1/runs/{id2}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if run["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(run["status"], "failed");
    assert!(
        run["error"].as_str().unwrap().contains("bot token"),
        "{run}"
    );
}

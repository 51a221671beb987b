//! The fake Kubernetes API server itself, through kube's own Api: what the provisioning and
//! reconcile tests rely on must behave like the real API server.

use axum::body::Body;
use axum::http::Request;
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;
use switchyard_orchestrator::k8s::fake::FakeApiServer;
use tower::ServiceExt;

fn secret(name: &str, team: &str) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"team": team, "app.kubernetes.io/managed-by": "switchyard"}}, "stringData": {"k": "v"}})).unwrap()
}

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn create_get_list_apply_delete_with_statuses() {
    let fake = FakeApiServer::new();
    let secrets: Api<Secret> = Api::namespaced(fake.client("ns"), "ns");
    let created = secrets
        .create(&PostParams::default(), &secret("a", "x"))
        .await
        .unwrap();
    let rv1: u64 = created.metadata.resource_version.unwrap().parse().unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(
        created.data.unwrap()["k"].0,
        b"v",
        "stringData becomes data"
    );
    assert_eq!(
        api_code(
            secrets
                .create(&PostParams::default(), &secret("a", "x"))
                .await
                .unwrap_err()
        ),
        409
    );
    assert_eq!(api_code(secrets.get("missing").await.unwrap_err()), 404);
    assert!(secrets.get_opt("missing").await.unwrap().is_none());

    // Server-side apply updates (resourceVersion moves, uid stays) and creates.
    let applied = secrets
        .patch(
            "a",
            &PatchParams::apply("switchyard").force(),
            &Patch::Apply(&secret("a", "y")),
        )
        .await
        .unwrap();
    assert!(
        applied
            .metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > rv1
    );
    assert_eq!(applied.metadata.uid, created.metadata.uid);
    secrets
        .patch(
            "b",
            &PatchParams::apply("switchyard"),
            &Patch::Apply(&secret("b", "y")),
        )
        .await
        .unwrap();
    // Label selectors.
    let ys = secrets
        .list(&ListParams::default().labels("team=y"))
        .await
        .unwrap();
    assert_eq!(ys.items.len(), 2);
    let none = secrets
        .list(&ListParams::default().labels("team=y,app.kubernetes.io/managed-by=other"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    // Delete; deleting again is 404.
    secrets
        .delete("a", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(
        api_code(
            secrets
                .delete("a", &DeleteParams::background())
                .await
                .unwrap_err()
        ),
        404
    );
    // Namespaces are separate.
    let other: Api<Secret> = Api::namespaced(fake.client("ns"), "other");
    assert!(
        other
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn apply_needs_a_field_manager_and_matching_name() {
    let fake = FakeApiServer::new();
    let send = |q: &str, name_in_body: &str| {
        let req = Request::patch(format!("/api/v1/namespaces/ns/secrets/a{q}"))
            .header("content-type", "application/apply-patch+yaml")
            .body(Body::from(
                json!({"metadata": {"name": name_in_body}}).to_string(),
            ))
            .unwrap();
        fake.router().oneshot(req)
    };
    let r = send("", "a").await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: serde_json::Value = serde_json::from_slice(
        &axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (body["kind"].as_str(), body["reason"].as_str()),
        (Some("Status"), Some("Invalid"))
    );
    assert_eq!(
        send("?fieldManager=t", "b")
            .await
            .unwrap()
            .status()
            .as_u16(),
        422
    );
    assert_eq!(
        send("?fieldManager=t", "a")
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        send("?fieldManager=t", "a")
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn watch_streams_changes_after_a_resource_version() {
    let fake = FakeApiServer::new();
    let api: Api<CronJob> = Api::namespaced(fake.client("ns"), "ns");
    let cj = |name: &str| -> CronJob {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"m": "s"}}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}})).unwrap()
    };
    api.create(&PostParams::default(), &cj("before"))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().labels("m=s"), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cj("after"))
        .await
        .unwrap();
    fake.remove("cronjobs", "ns", "before");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(format!("added {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(format!("deleted {}", o.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        ["added after", "deleted before"],
        "only changes after the resource version, in order"
    );
}

#[tokio::test]
async fn injected_failures_are_status_errors() {
    let fake = FakeApiServer::new();
    let secrets: Api<Secret> = Api::namespaced(fake.client("ns"), "ns");
    fake.fail_after(axum::http::Method::POST, "secrets", 500, 1, 1);
    secrets
        .create(&PostParams::default(), &secret("a", "x"))
        .await
        .unwrap();
    assert_eq!(
        api_code(
            secrets
                .create(&PostParams::default(), &secret("b", "x"))
                .await
                .unwrap_err()
        ),
        500
    );
    secrets
        .create(&PostParams::default(), &secret("b", "x"))
        .await
        .unwrap();
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        3
    );
}

//! The Kubernetes tools through kube-rs against the stateful fake API server: what they read and
//! summarise, and that a team reads only namespaces its config lists and the cluster assigns to its
//! org (a namespace of another org is refused before any read of it).

use serde_json::{Value, json};
use switchyard_agent_runner::agent::tools::ToolBox;
use switchyard_agent_runner::toolsets::{self, Context};
use switchyard_common::k8s_fake::FakeApiServer;

fn namespace(name: &str, org: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"switchyard.dev/org": org}}})
}

/// A cluster with acme's `payments` namespace (a crash-looping pod, its events and logs) and
/// globex's `ledger` namespace.
fn cluster() -> FakeApiServer {
    let fake = FakeApiServer::new();
    fake.insert("namespaces", "", namespace("payments", "acme"));
    fake.insert("namespaces", "", namespace("ledger", "globex"));
    fake.insert(
        "namespaces",
        "",
        json!({"metadata": {"name": "unlabelled"}}),
    );
    fake.insert(
        "pods",
        "payments",
        json!({"metadata": {"name": "checkout-7d9f", "labels": {"app": "checkout"},
            "managedFields": [{"manager": "kubectl"}]},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "checkout:1.4.2"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 7,
                "image": "checkout:1.4.2",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": "2026-11-23T10:00:00Z"}}}]}}),
    );
    fake.insert(
        "pods",
        "payments",
        json!({"metadata": {"name": "worker-1", "labels": {"app": "worker"}}, "status": {"phase": "Running"}}),
    );
    fake.insert(
        "pods",
        "ledger",
        json!({"metadata": {"name": "ledger-0"}, "status": {"phase": "Running"}}),
    );
    fake.insert(
        "deployments",
        "payments",
        json!({"metadata": {"name": "checkout", "generation": 12},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "checkout:1.4.2"}]}}},
            "status": {"replicas": 3, "readyReplicas": 1, "updatedReplicas": 3}}),
    );
    for (name, reason, time, object) in [
        ("e1", "BackOff", "2026-11-23T10:05:00Z", "checkout-7d9f"),
        ("e2", "OOMKilling", "2026-11-23T10:00:00Z", "checkout-7d9f"),
        ("e3", "Scheduled", "2026-11-23T09:00:00Z", "worker-1"),
    ] {
        fake.insert(
            "events",
            "payments",
            json!({"metadata": {"name": name}, "reason": reason, "type": "Warning", "lastTimestamp": time,
                "message": format!("{reason} for {object}"), "count": 3,
                "involvedObject": {"kind": "Pod", "name": object, "namespace": "payments"}}),
        );
    }
    fake.set_logs(
        "payments",
        "checkout-7d9f",
        "app",
        "boot\nready\nheap at 98%\n",
    );
    fake.set_logs(
        "payments",
        "checkout-7d9f",
        "app/previous",
        "boot\njava.lang.OutOfMemoryError: Java heap space\n",
    );
    fake
}

fn tools(fake: &FakeApiServer, org: &str, namespaces: Value) -> ToolBox {
    let section = json!({"tools": ["kubernetes_get", "kubernetes_logs", "kubernetes_events"],
        "toolsets": {"kubernetes": {"namespaces": namespaces}}});
    let enabled: Vec<String> = serde_json::from_value(section["tools"].clone()).unwrap();
    let ctx = Context {
        org: org.into(),
        team: "payments".into(),
        secrets: Default::default(),
        http: reqwest::Client::new(),
        kube: Some(fake.client("default")),
        events: None,
        github_api_base: String::new(),
        mcp: Vec::new(),
    };
    let (tools, missing) = toolsets::build(&section, &enabled, &ctx);
    assert!(missing.is_empty(), "{missing:?}");
    tools
}

#[tokio::test]
async fn pods_are_summarised_with_restarts_and_the_last_termination() {
    let fake = cluster();
    let t = tools(&fake, "acme", json!(["payments"]));
    // The only namespace is the default.
    let r = t
        .call(
            "kubernetes_get",
            &json!({"kind": "pods", "label_selector": "app=checkout"}),
        )
        .await;
    assert!(!r.error, "{r:?}");
    let v: Value = serde_json::from_str(&r.output).unwrap();
    assert_eq!(v["count"], 1);
    let pod = &v["items"][0];
    assert_eq!(pod["name"], "checkout-7d9f");
    assert_eq!(pod["containers"][0]["restarts"], 7);
    assert_eq!(pod["containers"][0]["now"]["reason"], "CrashLoopBackOff");
    assert_eq!(
        pod["containers"][0]["last_terminated"]["reason"],
        "OOMKilled"
    );

    let r = t
        .call(
            "kubernetes_get",
            &json!({"kind": "Deployment", "name": "checkout"}),
        )
        .await;
    let v: Value = serde_json::from_str(&r.output).unwrap();
    assert_eq!(v["status"]["readyReplicas"], 1, "{r:?}");
    let r = t
        .call(
            "kubernetes_get",
            &json!({"kind": "pod", "name": "checkout-7d9f"}),
        )
        .await;
    assert!(
        !r.output.contains("managedFields"),
        "managed fields are dropped: {r:?}"
    );
    let r = t
        .call("kubernetes_get", &json!({"kind": "pod", "name": "gone"}))
        .await;
    assert!(r.error && r.output.contains("not found"), "{r:?}");
}

#[tokio::test]
async fn logs_and_events_of_a_crashing_pod() {
    let fake = cluster();
    let t = tools(&fake, "acme", json!(["payments"]));
    let r = t
        .call(
            "kubernetes_logs",
            &json!({"pod": "checkout-7d9f", "previous": true}),
        )
        .await;
    assert!(!r.error && r.output.contains("OutOfMemoryError"), "{r:?}");
    let r = t
        .call(
            "kubernetes_logs",
            &json!({"pod": "checkout-7d9f", "tail_lines": 1}),
        )
        .await;
    assert_eq!(r.output, "heap at 98%\n");
    let log = fake
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/log"))
        .unwrap();
    assert_eq!(
        log.path,
        "/api/v1/namespaces/payments/pods/checkout-7d9f/log"
    );
    assert!(log.query.contains("tailLines=1"), "{log:?}");

    let r = t
        .call(
            "kubernetes_events",
            &json!({"name": "checkout-7d9f", "kind": "Pod"}),
        )
        .await;
    let v: Value = serde_json::from_str(&r.output).unwrap();
    let reasons: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["BackOff", "OOMKilling"],
        "newest first, only the pod's"
    );
    assert_eq!(v["events"][0]["object"], "Pod/checkout-7d9f");
}

#[tokio::test]
async fn a_team_reads_only_its_listed_namespaces_that_belong_to_its_org() {
    let fake = cluster();
    // acme's admin lists globex's namespace and an unlabelled one: both refused, nothing read.
    let t = tools(&fake, "acme", json!(["payments", "ledger", "unlabelled"]));
    for ns in ["ledger", "unlabelled"] {
        for (tool, args) in [
            ("kubernetes_get", json!({"kind": "pods", "namespace": ns})),
            (
                "kubernetes_logs",
                json!({"pod": "ledger-0", "namespace": ns}),
            ),
            ("kubernetes_events", json!({"namespace": ns})),
        ] {
            let r = t.call(tool, &args).await;
            assert!(
                r.error && r.output.contains("not assigned to this organisation"),
                "{tool} {ns}: {r:?}"
            );
        }
    }
    // Not listed by the team at all.
    let r = t
        .call(
            "kubernetes_get",
            &json!({"kind": "pods", "namespace": "kube-system"}),
        )
        .await;
    assert!(
        r.error && r.output.contains("not one this team may read"),
        "{r:?}"
    );
    // Several namespaces: the model must say which.
    let r = t.call("kubernetes_get", &json!({"kind": "pods"})).await;
    assert!(
        r.error && r.output.contains("\"namespace\" is required"),
        "{r:?}"
    );
    // Secrets, never.
    let r = t
        .call(
            "kubernetes_get",
            &json!({"kind": "secrets", "namespace": "payments"}),
        )
        .await;
    assert!(r.error && r.output.contains("never"), "{r:?}");
    // The only reads under another org's namespace: none. Its namespace object was read
    // (the org check), nothing in it.
    let foreign: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.path.contains("/namespaces/ledger/")
                || r.path.contains("/namespaces/unlabelled/")
                || r.path.contains("/namespaces/kube-system")
                || r.path.contains("/secrets")
        })
        .collect();
    assert!(foreign.is_empty(), "{foreign:?}");
    // The same org's own namespace still reads.
    let r = t
        .call(
            "kubernetes_get",
            &json!({"kind": "pods", "namespace": "payments"}),
        )
        .await;
    assert!(!r.error, "{r:?}");

    // globex reads its own, and not acme's.
    let g = tools(&fake, "globex", json!(["ledger", "payments"]));
    let r = g
        .call(
            "kubernetes_get",
            &json!({"kind": "pods", "namespace": "ledger"}),
        )
        .await;
    assert!(!r.error && r.output.contains("ledger-0"), "{r:?}");
    let r = g
        .call(
            "kubernetes_get",
            &json!({"kind": "pods", "namespace": "payments"}),
        )
        .await;
    assert!(r.error, "{r:?}");
}

#[tokio::test]
async fn no_cluster_or_no_namespaces_means_no_kubernetes_tools() {
    let section =
        json!({"tools": ["kubernetes_get"], "toolsets": {"kubernetes": {"namespaces": []}}});
    let fake = cluster();
    let mut ctx = Context {
        org: "acme".into(),
        team: "payments".into(),
        secrets: Default::default(),
        http: reqwest::Client::new(),
        kube: Some(fake.client("default")),
        events: None,
        github_api_base: String::new(),
        mcp: Vec::new(),
    };
    let (t, missing) = toolsets::build(&section, &["kubernetes_get".into()], &ctx);
    assert!(t.is_empty() && missing == ["kubernetes_get"]);
    ctx.kube = None;
    let section = json!({"toolsets": {"kubernetes": {"namespaces": ["payments"]}}});
    let (t, _) = toolsets::build(&section, &["kubernetes_get".into()], &ctx);
    assert!(t.is_empty());
}

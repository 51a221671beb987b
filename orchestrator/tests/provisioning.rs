//! Onboarding and offboarding teams against the stateful fake Kubernetes API server (through the
//! same kube client code as production), with real HTTP to the config-service.

mod stack;

use reqwest::Method;
use serde_json::{Value, json};
use stack::{Options, Stack};
use switchyard_common::db::{Backend, Db};
use switchyard_orchestrator::k8s;

const NS: &str = "tenants";

fn team_request(team: &str, key: &str) -> Value {
    json!({
        "team_id": team,
        "name": format!("Team {team}"),
        "config": {
            "routing": {"service": format!("{team}-api")},
            "pipelines": {
                "ingestion": {"schedule": "*/15 * * * *"},
                "evaluation": {"schedule": "@daily", "time_zone": "Europe/Paris", "image": "registry.example/eval:1.2"}
            }
        },
        "idempotency_key": key
    })
}

async fn provision(s: &Stack, team: &str, key: &str) -> Value {
    let (st, run) = s
        .admin(
            Method::POST,
            format!("{}/api/v1/orgs/acme/provisioning", s.orch),
            Some(team_request(team, key)),
        )
        .await;
    assert!(st == 202 || st == 200, "{st}: {run}");
    s.orch_state.provisioner.wait_for_runs().await;
    s.must(
        Method::GET,
        format!(
            "{}/api/v1/orgs/acme/provisioning/{}",
            s.orch,
            run["id"].as_str().unwrap()
        ),
        None,
    )
    .await
}

async fn stack(b: Backend, cluster: bool) -> Stack {
    let s = Stack::start(
        b,
        Options {
            cluster,
            ..Options::default()
        },
    )
    .await;
    s.must(
        Method::POST,
        format!("{}/api/v1/orgs", s.cs),
        Some(json!({"id": "acme", "name": "Acme"})),
    )
    .await;
    s
}

fn step_names(run: &Value) -> Vec<(String, String)> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            (
                st["name"].as_str().unwrap().to_owned(),
                st["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// What the config-service holds for a team: (node exists, live tokens, routes).
async fn footprint(s: &Stack, team: &str) -> (bool, i64, i64) {
    let db = Db::connect(&s.cs_db_url, 2).await.unwrap();
    let node: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM cs_nodes WHERE org_id = 'acme' AND id = $1")
            .bind(team)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let tokens: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cs_tokens WHERE org_id = 'acme' AND node_id = $1 AND revoked_at IS NULL").bind(team).fetch_one(&db.pool).await.unwrap();
    let routes: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM cs_routes WHERE org_id = 'acme' AND node_id = $1")
            .bind(team)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    (node == 1, tokens, routes)
}

fn cluster_objects(s: &Stack, team: &str) -> (usize, bool) {
    let f = s.fake.as_ref().unwrap();
    let cronjobs = f
        .objects("cronjobs", NS)
        .iter()
        .filter(|o| {
            o.pointer("/metadata/labels/switchyard.dev~1team")
                .and_then(Value::as_str)
                == Some(team)
        })
        .count();
    (
        cronjobs,
        f.object("secrets", NS, &k8s::secret_name("acme", team))
            .is_some(),
    )
}

async fn onboarding_creates_node_config_token_secret_and_cronjobs(b: Backend) {
    let s = stack(b, true).await;
    let run = provision(&s, "payments", "onboard-1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        step_names(&run),
        [
            "create_node",
            "write_config",
            "issue_token",
            "store_secret",
            "apply_cronjobs"
        ]
        .map(|n| (n.to_owned(), "succeeded".to_owned()))
    );
    assert_eq!(footprint(&s, "payments").await, (true, 1, 1));

    // The request and the outcome are in the org's audit chain (relayed from the outbox).
    stack::eventually("provisioning is audited", 20, || async {
        let (_, audit) = s
            .admin(
                Method::GET,
                format!("{}/api/v1/orgs/acme/audit?target=team/payments", s.cs),
                None,
            )
            .await;
        let actions: Vec<String> = audit["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["action"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        actions.contains(&"provision.requested".to_owned())
            && actions.contains(&"provision.succeeded".to_owned())
    })
    .await;

    // The Secret holds a working team token and the config-service URL.
    let f = s.fake.as_ref().unwrap();
    let secret = f
        .object("secrets", NS, &k8s::secret_name("acme", "payments"))
        .unwrap();
    let b64 =
        |k: &str| String::from_utf8(base64_decode(secret["data"][k].as_str().unwrap())).unwrap();
    let token = b64("SWITCHYARD_TOKEN");
    assert_eq!(b64("SWITCHYARD_CONFIG_SERVICE_URL"), s.cs);
    let me: Value = s
        .http
        .get(format!("{}/api/v1/config/me", s.cs))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["node_id"], "payments");

    // Two CronJobs, as the config says, with labels, hash, policies, and the token from the Secret.
    let cjs = f.objects("cronjobs", NS);
    assert_eq!(cjs.len(), 2);
    let eval = cjs
        .iter()
        .find(|c| c["metadata"]["labels"]["switchyard.dev/pipeline"] == "evaluation")
        .unwrap();
    let name = eval["metadata"]["name"].as_str().unwrap();
    assert_eq!(name, k8s::cronjob_name("acme", "payments", "evaluation"));
    assert!(name.len() <= 52);
    assert_eq!(
        eval["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "switchyard"
    );
    assert_eq!(
        eval["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "switchyard"
    );
    assert_eq!(
        eval["metadata"]["labels"]["app.kubernetes.io/component"],
        "pipeline"
    );
    assert!(
        eval["metadata"]["annotations"]["switchyard.dev/spec-hash"]
            .as_str()
            .unwrap()
            .len()
            == 16
    );
    assert_eq!(
        (
            eval["spec"]["schedule"].as_str(),
            eval["spec"]["timeZone"].as_str()
        ),
        (Some("@daily"), Some("Europe/Paris"))
    );
    assert_eq!(eval["spec"]["concurrencyPolicy"], "Forbid");
    let job = &eval["spec"]["jobTemplate"]["spec"];
    assert_eq!(
        (
            job["backoffLimit"].as_i64(),
            job["ttlSecondsAfterFinished"].as_i64()
        ),
        (Some(2), Some(86400))
    );
    let container = &job["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/eval:1.2");
    let env = container["env"].as_array().unwrap();
    let tok = env
        .iter()
        .find(|e| e["name"] == "SWITCHYARD_TOKEN")
        .unwrap();
    assert!(tok.get("value").is_none(), "the token is never inline");
    assert_eq!(
        tok["valueFrom"]["secretKeyRef"]["name"],
        k8s::secret_name("acme", "payments")
    );
    assert!(!eval.to_string().contains(&token));

    // The same idempotency key answers the same run.
    let (st, again) = s
        .admin(
            Method::POST,
            format!("{}/api/v1/orgs/acme/provisioning", s.orch),
            Some(team_request("payments", "onboard-1")),
        )
        .await;
    assert_eq!((st, &again["id"]), (200, &run["id"]));
    // A Job can be started from the pipeline now.
    let (st, started) = s
        .admin(
            Method::POST,
            format!(
                "{}/api/v1/orgs/acme/teams/payments/pipelines/ingestion/run",
                s.orch
            ),
            None,
        )
        .await;
    assert_eq!(st, 201, "{started}");
    let jobs = f.objects("jobs", NS);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["metadata"]["ownerReferences"][0]["kind"], "CronJob");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

async fn a_failure_at_every_step_leaves_nothing_behind(b: Backend) {
    let s = stack(b, true).await;
    let f = s.fake.clone().unwrap();
    let failures: [(&str, &str); 5] = [
        ("create_node", "failpoint"),
        ("write_config", "failpoint"),
        ("issue_token", "failpoint"),
        ("store_secret", "secrets"),
        ("apply_cronjobs", "cronjobs"),
    ];
    for (i, (step, how)) in failures.iter().enumerate() {
        let team = format!("t{i}");
        s.orch_state.provisioner.failpoints.clear();
        if *how == "failpoint" {
            s.orch_state
                .provisioner
                .failpoints
                .set(&format!("step:{step}"));
        } else {
            // The Kubernetes API fails; for CronJobs, the second apply fails after the first
            // succeeded, so the applied one must be deleted again.
            let skip = usize::from(*how == "cronjobs");
            f.fail_after(axum::http::Method::PATCH, how, 500, skip, 1);
        }
        let run = provision(&s, &team, &format!("fail-{i}")).await;
        assert_eq!(run["status"], "rolled_back", "{step}: {run}");
        assert!(run["error"].as_str().unwrap().len() > 3);
        let steps = step_names(&run);
        assert!(
            steps.contains(&(step.to_string(), "failed".to_owned())),
            "{step}: {steps:?}"
        );
        assert!(
            steps
                .iter()
                .filter(|(n, _)| n.starts_with("compensate:"))
                .all(|(_, st)| st == "succeeded"),
            "{steps:?}"
        );
        if *how == "cronjobs" {
            assert!(
                steps.contains(&(
                    "compensate:apply_cronjobs".to_owned(),
                    "succeeded".to_owned()
                )),
                "{steps:?}"
            );
        }
        assert_eq!(
            footprint(&s, &team).await,
            (false, 0, 0),
            "{step}: the config-service keeps nothing"
        );
        assert_eq!(
            cluster_objects(&s, &team),
            (0, false),
            "{step}: the cluster keeps nothing"
        );
    }
    // A compensation that fails is named: the run is `failed`, not `rolled_back`.
    s.orch_state.provisioner.failpoints.clear();
    f.fail(axum::http::Method::PATCH, "cronjobs", 500, 1);
    s.orch_state
        .provisioner
        .failpoints
        .set("compensate:issue_token");
    let run = provision(&s, "t9", "fail-9").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("could not undo"),
        "{run}"
    );
    // The dashboards and the reconcile alert read the outcomes.
    let text = s.orch_state.metrics.render();
    for line in [
        "switchyard_orchestrator_provisioning_runs_total{kind=\"provision\",outcome=\"rolled_back\"} 5\n",
        "switchyard_orchestrator_provisioning_runs_total{kind=\"provision\",outcome=\"failed\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

async fn deprovisioning_leaves_nothing_and_can_run_twice(b: Backend) {
    let s = stack(b, true).await;
    assert_eq!(provision(&s, "search", "on-1").await["status"], "succeeded");
    assert_eq!(cluster_objects(&s, "search"), (2, true));
    for attempt in 0..2 {
        let (st, run) = s
            .admin(
                Method::POST,
                format!("{}/api/v1/orgs/acme/teams/search/deprovision", s.orch),
                None,
            )
            .await;
        assert_eq!(st, 202, "{run}");
        s.orch_state.provisioner.wait_for_runs().await;
        let run = s
            .must(
                Method::GET,
                format!(
                    "{}/api/v1/orgs/acme/provisioning/{}",
                    s.orch,
                    run["id"].as_str().unwrap()
                ),
                None,
            )
            .await;
        assert_eq!(run["status"], "succeeded", "attempt {attempt}: {run}");
        assert_eq!(footprint(&s, "search").await, (false, 0, 0));
        assert_eq!(cluster_objects(&s, "search"), (0, false));
    }
    let runs = s
        .must(
            Method::GET,
            format!("{}/api/v1/orgs/acme/provisioning", s.orch),
            None,
        )
        .await;
    assert_eq!(runs.as_array().unwrap().len(), 3);
    // The node is archived with its config history, not lost.
    let archived = s
        .must(
            Method::GET,
            format!("{}/api/v1/orgs/acme/archived-nodes", s.cs),
            None,
        )
        .await;
    let entry = archived
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["node_id"] == "search")
        .expect("search is archived");
    assert_eq!(
        entry["versions"][0]["layer"]["pipelines"]["ingestion"]["schedule"],
        "*/15 * * * *"
    );
}

async fn without_a_cluster_kubernetes_steps_are_skipped(b: Backend) {
    let s = stack(b, false).await;
    let run = provision(&s, "ops", "nocluster-1").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let steps = run["steps"].as_array().unwrap();
    for st in steps
        .iter()
        .filter(|st| st["name"] == "store_secret" || st["name"] == "apply_cronjobs")
    {
        assert_eq!(
            (st["status"].as_str(), st["detail"].as_str()),
            (Some("skipped"), Some("skipped: no cluster configured"))
        );
    }
    assert_eq!(footprint(&s, "ops").await, (true, 1, 1));
    let (st, p) = s
        .admin(
            Method::POST,
            format!(
                "{}/api/v1/orgs/acme/teams/ops/pipelines/ingestion/run",
                s.orch
            ),
            None,
        )
        .await;
    assert_eq!(
        (st, p["type"].as_str()),
        (409, Some("urn:switchyard:problem:no-cluster"))
    );
    // Bad schedules are refused before anything is created.
    let mut bad = team_request("bad", "bad-1");
    bad["config"]["pipelines"]["ingestion"]["schedule"] = json!("every tuesday");
    let (st, p) = s
        .admin(
            Method::POST,
            format!("{}/api/v1/orgs/acme/provisioning", s.orch),
            Some(bad),
        )
        .await;
    assert_eq!(
        (st, p["pointer"].as_str()),
        (422, Some("/config/pipelines"))
    );
    assert_eq!(footprint(&s, "bad").await, (false, 0, 0));
}

async fn requests_use_server_side_apply_with_a_field_manager(b: Backend) {
    let s = stack(b, true).await;
    let f = s.fake.clone().unwrap();
    f.clear_requests();
    provision(&s, "web", "req-1").await;
    let reqs = f.requests();
    let applies: Vec<_> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(applies.len(), 3, "one Secret and two CronJobs: {reqs:?}");
    for r in &applies {
        assert_eq!(r.content_type, "application/apply-patch+yaml");
        assert!(
            r.query.contains("fieldManager=switchyard") && r.query.contains("force=true"),
            "{}",
            r.query
        );
    }
    assert!(
        applies[0].path
            == format!(
                "/api/v1/namespaces/{NS}/secrets/{}",
                k8s::secret_name("acme", "web")
            )
    );
    assert!(
        applies[1]
            .path
            .starts_with(&format!("/apis/batch/v1/namespaces/{NS}/cronjobs/sy-"))
    );
    f.clear_requests();
    s.admin(
        Method::POST,
        format!("{}/api/v1/orgs/acme/teams/web/deprovision", s.orch),
        None,
    )
    .await;
    s.orch_state.provisioner.wait_for_runs().await;
    let reqs = f.requests();
    let list = reqs.iter().find(|r| r.method == "GET").unwrap();
    assert!(
        list.query
            .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dswitchyard"),
        "{}",
        list.query
    );
    let deletes: Vec<_> = reqs.iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 3);
    assert!(
        deletes
            .iter()
            .all(|d| d.body.contains("\"propagationPolicy\":\"Background\"")),
        "{deletes:?}"
    );
}

switchyard_common::on_both_backends!(
    onboarding_creates_node_config_token_secret_and_cronjobs,
    a_failure_at_every_step_leaves_nothing_behind,
    deprovisioning_leaves_nothing_and_can_run_twice,
    without_a_cluster_kubernetes_steps_are_skipped,
    requests_use_server_side_apply_with_a_field_manager,
);

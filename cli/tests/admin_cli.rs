//! The admin CLI against a real `switchyard dev` (its own ports and data dir): every resource's
//! verbs, tables and `--json`, and the exit codes scripts rely on (3 not found, 4 conflict,
//! 5 invalid input, 6 refused).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ADMIN: &str = "cli-test-admin-token-0123456789abcdef";

struct Dev {
    child: Child,
    dir: PathBuf,
    cs: String,
    orch: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it holds (bounded), for conditions another process makes true.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start() -> Dev {
    let dir = std::env::temp_dir().join(format!("sy-cli-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let (o, c, r) = (free_port(), free_port(), free_port());
    let log = std::fs::File::create(dir.join("dev.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["dev", "--orchestrator-addr", &format!("127.0.0.1:{o}")])
        .args(["--config-service-addr", &format!("127.0.0.1:{c}")])
        .args(["--agent-runner-addr", &format!("127.0.0.1:{r}")])
        .env("SWITCHYARD_DATA_DIR", &dir)
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let dev = Dev {
        child,
        dir,
        cs: format!("http://127.0.0.1:{c}"),
        orch: format!("http://127.0.0.1:{o}"),
    };
    let http = reqwest::Client::new();
    for url in [&dev.cs, &dev.orch] {
        eventually("switchyard dev is ready", || async {
            http.get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }
    dev
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Runs `switchyard <args>` with `token` and the org `acme`.
fn sy(dev: &Dev, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env("SWITCHYARD_URL", &dev.cs)
        .env("SWITCHYARD_ORCHESTRATOR_URL", &dev.orch)
        .env("SWITCHYARD_TOKEN", token)
        .env("SWITCHYARD_ORG", "acme")
        .env_remove("SWITCHYARD_TOKEN_FILE")
        .env_remove("SWITCHYARD_DATABASE_URL")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output, code: i32, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(says), "{stderr} should say {says}");
}

/// The first item a listing prints once there is one (bounded: 30 s).
async fn first_item(run: &impl Fn(&[&str]) -> Output, args: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let item = json(&run(args))["items"][0].clone();
        if !item.is_null() {
            return item;
        }
        assert!(Instant::now() < deadline, "{args:?}: nothing within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("--json prints JSON")
}

#[tokio::test]
async fn every_resource_over_the_api_with_exit_codes() {
    let dev = start().await;
    let a = |args: &[&str]| sy(&dev, ADMIN, args);
    let file = |name: &str, body: &str| {
        let p = dev.dir.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_string_lossy().into_owned()
    };

    // Organisations.
    assert!(ok(&a(&["orgs", "create", "acme", "--name", "Acme"])).contains("acme  Acme"));
    assert_eq!(json(&a(&["orgs", "list", "--json"]))[0]["id"], "acme");
    fails(&a(&["orgs", "get", "nope"]), 3, "not found");

    // Teams: onboarding runs provisioning and waits for it; the tree shows the team.
    let cfg = file(
        "checkout.json",
        r#"{"agent": {"provider": "offline", "model": "m1"}}"#,
    );
    let onboard = ok(&a(&[
        "teams", "onboard", "checkout", "--name", "Checkout", "--config", &cfg,
    ]));
    assert!(onboard.contains(": succeeded"), "{onboard}");
    assert!(onboard.contains("create_node     succeeded"), "{onboard}");
    assert!(ok(&a(&["teams", "tree"])).contains("\n  checkout (team) Checkout"));

    // Config: explain, set with If-Match (a stale one is a conflict), history, diff.
    let explain = ok(&a(&["config", "get", "checkout", "--explain"]));
    assert!(
        explain.contains("/agent/model") && explain.contains("checkout"),
        "{explain}"
    );
    let m2 = file(
        "m2.json",
        r#"{"agent": {"provider": "offline", "model": "m2"}}"#,
    );
    let set = ok(&a(&[
        "config",
        "set",
        "checkout",
        "--file",
        &m2,
        "--if-match",
        "\"v1\"",
        "--message",
        "m2",
    ]));
    assert!(set.contains("version 2"), "{set}");
    fails(
        &a(&[
            "config",
            "set",
            "checkout",
            "--file",
            &m2,
            "--if-match",
            "\"v1\"",
        ]),
        4,
        "",
    );
    let bad = file("bad.json", "{not json");
    fails(
        &a(&["config", "set", "checkout", "--file", &bad]),
        5,
        "is not JSON",
    );
    assert!(ok(&a(&["config", "history", "checkout"])).contains("m2"));
    let diff = ok(&a(&["config", "diff", "checkout", "--from", "1"]));
    assert_eq!(diff.trim(), "~ /agent/model: \"m1\" -> \"m2\"");
    fails(
        &a(&["config", "diff", "checkout", "--from", "9"]),
        5,
        "does not exist",
    );

    // Tokens: a team token is refused what only admins may do.
    let issued = json(&a(&[
        "tokens", "create", "--label", "ci", "--team", "checkout", "--json",
    ]));
    let team = issued["secret"].as_str().unwrap().to_owned();
    assert!(ok(&a(&["tokens", "list", "--team", "checkout"])).contains(" ci "));
    fails(&sy(&dev, &team, &["orgs", "list"]), 6, "");
    fails(&sy(&dev, "", &["orgs", "list"]), 5, "SWITCHYARD_TOKEN");
    fails(&sy(&dev, "not-a-token", &["orgs", "list"]), 6, "");

    // Integrations: the webhook URL; a delivery becomes an event, dispatched to a run.
    let i = json(&a(&[
        "integrations",
        "create",
        "--source",
        "gitlab",
        "--name",
        "gl",
        "--default-team",
        "checkout",
        "--secret-file",
        &file("s", "gitlab-secret-0123456789"),
        "--json",
    ]));
    let path = i["webhook_path"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", dev.orch))
        .header("x-gitlab-token", "gitlab-secret-0123456789")
        .header("x-gitlab-event", "Issue Hook")
        .header("x-gitlab-event-uuid", "cli-test-1")
        .header("content-type", "application/json")
        .body(r#"{"object_kind": "issue", "project": {"path_with_namespace": "acme/checkout"}, "object_attributes": {"iid": 7, "title": "checkout down", "action": "open"}}"#)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let event = first_item(&a, &["events", "list", "--status", "dispatched", "--json"]).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let shown = ok(&a(&["events", "show", &id]));
    assert!(shown.contains("dispatched"), "{shown}");
    fails(&a(&["events", "show", "no-such-event"]), 3, "not found");
    fails(&a(&["events", "replay"]), 5, "name an event");
    assert!(ok(&a(&["events", "replay", &id])).contains("replayed"));

    // Runs: the event's run, shown; a finished run cannot be cancelled.
    let run = first_item(&a, &["runs", "list", "--status", "succeeded", "--json"]).await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    assert!(ok(&a(&["runs", "show", &run_id])).contains("model turn 1"));
    fails(&a(&["runs", "cancel", &run_id]), 4, "");

    // Secrets, write-only: listed by fingerprint.
    let v = file("v", "sk-test-value");
    ok(&a(&["secrets", "set", "llm", "--value-file", &v]));
    let listed = ok(&a(&["secrets", "list"]));
    assert!(
        listed.contains("llm") && !listed.contains("sk-test-value"),
        "{listed}"
    );
    ok(&a(&["secrets", "delete", "llm"]));

    // The audit log lists what was done and its chain verifies.
    let audit = ok(&a(&["audit", "list", "--action", "config.layer_updated"]));
    assert!(audit.contains("node/checkout"), "{audit}");
    assert!(ok(&a(&["audit", "verify"])).contains("intact"));

    // Completions.
    assert!(ok(&a(&["completions", "bash"])).contains("_switchyard()"));
}

//! The web console (`/console`) through the real orchestrator and config-service.
//!
//! - Over HTTP, on PostgreSQL and SQLite: sign-in, the session cookie's flags, CSRF on every form,
//!   a cross-org page answering 404 without a trace of the other org, the token never in a page,
//!   a revoked token or a tampered cookie signing the browser out.
//! - In a real headless Chromium (Debian `chromium` + `chromium-driver`, driven by fantoccini over
//!   WebDriver): an org admin signs in, cannot see another org, replays a dead letter (which then
//!   reaches the agent) and approves a protected change; screenshots of the main pages are written
//!   to `target/console-screenshots/`.

mod stack;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use stack::{Options, Stack, eventually};
use switchyard_common::db::Backend;
use switchyard_orchestrator::settings::Limits;
use switchyard_orchestrator::sources::verify::sign::hmac_hex;

const PD_SECRET: &str = "pagerduty-secret-console";
const BETA_TEAM_NAME: &str = "Beta Payments Private Team";

struct Seeded {
    /// Alice: an org admin of acme (not the author of the pending change).
    alice: String,
    alice_token_id: String,
    dead_event: String,
    change: String,
}

/// acme/checkout (PagerDuty service PSVC1, offline agent, `/agent/prompts` protected) and
/// beta/payments; a PagerDuty event dead-lettered because no agent-runner answered; a pending
/// change to a protected path proposed by the platform admin.
async fn seed(s: &Stack) -> Seeded {
    let (cs, o) = (&s.cs, &s.orch);
    for (org, team, name) in [
        ("acme", "checkout", "Checkout"),
        ("beta", "payments", BETA_TEAM_NAME),
    ] {
        s.must(
            Method::POST,
            format!("{cs}/api/v1/orgs"),
            Some(json!({"id": org, "name": org})),
        )
        .await;
        s.must(
            Method::POST,
            format!("{cs}/api/v1/orgs/{org}/nodes"),
            Some(json!({"id": team, "kind": "team", "name": name})),
        )
        .await;
    }
    s.layer(
        "acme",
        "checkout",
        json!({"routing": {"pagerduty_service": "PSVC1"}, "agent": {"provider": "offline", "model": "triage-1"}}),
    )
    .await;
    s.must(
        Method::PUT,
        format!("{cs}/api/v1/orgs/acme/policy"),
        Some(json!({"protected_paths": ["/agent/prompts"]})),
    )
    .await;
    let issued = s
        .must(
            Method::POST,
            format!("{cs}/api/v1/orgs/acme/admin-tokens"),
            Some(json!({"label": "console", "subject": "alice@acme.example"})),
        )
        .await;
    let pd = s
        .must(
            Method::POST,
            format!("{o}/api/v1/orgs/acme/integrations"),
            Some(json!({"source": "pagerduty", "name": "PagerDuty", "secrets": [PD_SECRET]})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"event": {"id": "ev-console-1", "event_type": "incident.triggered", "occurred_at": "2026-12-05T08:00:00Z",
        "data": {"id": "PCONSOLE1", "type": "incident", "title": "Checkout latency", "service": {"id": "PSVC1", "summary": "checkout"}}}})
        .to_string();
    let headers = [
        (
            "x-pagerduty-signature",
            format!("v1={}", hmac_hex(PD_SECRET.as_bytes(), &[body.as_bytes()])),
        ),
        ("x-webhook-id", "console-1".to_owned()),
        ("content-type", "application/json".to_owned()),
    ];
    let (status, ack, _) = s
        .webhook(
            &format!("/webhooks/pagerduty/{pd}"),
            &headers,
            body.as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{ack}");
    eventually(
        "the event is dead-lettered (no agent-runner)",
        30,
        || async { s.events("acme", "dead_lettered").await.len() == 1 },
    )
    .await;
    // The platform admin proposes a change to a protected path: it awaits another admin.
    let url = format!("{cs}/api/v1/orgs/acme/nodes/checkout/config/layer");
    let etag = s
        .http
        .get(&url)
        .bearer_auth(stack::ADMIN)
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let resp = s
        .http
        .put(&url)
        .bearer_auth(stack::ADMIN)
        .header("if-match", etag)
        .json(&json!({"routing": {"pagerduty_service": "PSVC1"}, "agent": {"provider": "offline", "model": "triage-1",
            "prompts": {"system": "You are Checkout's incident agent. Start with the payment gateway."}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let change = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Seeded {
        alice: issued["secret"].as_str().unwrap().to_owned(),
        alice_token_id: issued["id"].as_str().unwrap().to_owned(),
        dead_event: ack["event_id"].as_str().unwrap().to_owned(),
        change,
    }
}

fn options() -> Options {
    Options {
        start_runner: false,
        limits: Limits {
            retry_base_ms: 50,
            max_attempts: 2,
            ..Limits::default()
        },
        ..Options::default()
    }
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of a `Set-Cookie` named `name`, and the whole header.
fn set_cookie(h: &HeaderMap, name: &str) -> Option<(String, String)> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
}

/// Signs in over HTTP as the sign-in form does; answers the session cookie (`sy_console=...`)
/// and its `Set-Cookie` header, or the sign-in page's status when refused.
async fn sign_in(
    http: &reqwest::Client,
    orch: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> Result<(String, String), u16> {
    let form = http
        .get(format!("{orch}/console/login"))
        .send()
        .await
        .unwrap();
    let (nonce_cookie, _) = set_cookie(form.headers(), "sy_console_login").unwrap();
    let nonce = nonce_cookie.split_once('=').unwrap().1.to_owned();
    let page = form.text().await.unwrap();
    assert!(page.contains(&format!("value=\"{nonce}\"")), "{page}");
    let mut req = http
        .post(format!("{orch}/console/login"))
        .header("cookie", nonce_cookie)
        .form(&[
            ("csrf", nonce.as_str()),
            ("token", token),
            ("next", "/console"),
        ]);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    match set_cookie(resp.headers(), "sy_console") {
        Some(c) if resp.status().as_u16() == 303 => Ok(c),
        _ => Err(resp.status().as_u16()),
    }
}

/// The CSRF secret a console page embeds in its forms.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form") + 19;
    page[at..at + 32].to_owned()
}

async fn sessions_are_sealed_and_every_form_needs_its_secret(b: Backend) {
    let s = Stack::start(b, options()).await;
    let seeded = seed(&s).await;
    let http = plain_client();
    let o = &s.orch;

    // Signed out: every page sends the browser to sign in, and back afterwards.
    let r = http
        .get(format!("{o}/console/orgs/acme/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        r.headers()[LOCATION],
        "/console/login?next=%2Fconsole%2Forgs%2Facme%2Fevents"
    );
    assert_eq!(
        sign_in(&http, o, "not-a-token-0123456789", &[]).await,
        Err(401)
    );
    // The sign-in form itself needs its double-submit nonce.
    let r = http
        .post(format!("{o}/console/login"))
        .form(&[("csrf", "guess"), ("token", seeded.alice.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(set_cookie(r.headers(), "sy_console").is_none());

    let (cookie, header) = sign_in(&http, o, &seeded.alice, &[]).await.unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(header.contains(flag), "{header}");
    }
    assert!(!header.contains("Secure"), "plain HTTP: {header}");
    assert!(!cookie.contains(&seeded.alice), "the cookie is sealed");
    let (_, tls) = sign_in(&http, o, &seeded.alice, &[("x-forwarded-proto", "https")])
        .await
        .unwrap();
    assert!(tls.contains("; Secure"), "{tls}");

    let get = |path: String| {
        let (http, cookie) = (http.clone(), cookie.clone());
        async move {
            let r = http
                .get(format!("{o}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let csp = r
                .headers()
                .get("content-security-policy")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, r.text().await.unwrap(), csp)
        }
    };
    let r = http
        .get(format!("{o}/console"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()[LOCATION],
        "/console/orgs/acme",
        "an org admin's home"
    );
    for page in [
        "/console/orgs/acme",
        "/console/orgs/acme/teams/checkout",
        "/console/orgs/acme/changes",
        "/console/orgs/acme/integrations",
        "/console/orgs/acme/events",
        "/console/orgs/acme/events?status=dead_lettered",
        "/console/orgs/acme/runs",
        "/console/orgs/acme/incidents",
        "/console/orgs/acme/provisioning",
        "/console/orgs/acme/audit",
    ] {
        let (status, html, csp) = get(page.to_owned()).await;
        assert_eq!(status, 200, "{page}: {html}");
        assert!(!html.contains(&seeded.alice), "{page} shows the token");
        assert!(!html.contains(PD_SECRET), "{page} shows a signing secret");
        assert!(
            csp.is_some_and(|c| c.contains("script-src 'self'")),
            "{page}"
        );
    }
    // Another org: the API's 404, and nothing of it on the page.
    for page in [
        "/console/orgs/beta",
        "/console/orgs/beta/teams/payments",
        "/console/orgs/beta/events",
    ] {
        let (status, html, _) = get(page.to_owned()).await;
        assert_eq!(status, 404, "{page}: {html}");
        assert!(!html.contains(BETA_TEAM_NAME), "{page}: {html}");
    }

    // A team token lands on its team and is refused the org admins' pages; the platform admin
    // sees every organisation.
    let team = s.team_token("acme", "checkout").await;
    let (team_cookie, _) = sign_in(&http, o, &team, &[]).await.unwrap();
    let as_team = |path: &str| {
        http.get(format!("{o}{path}"))
            .header("cookie", &team_cookie)
            .send()
    };
    let r = as_team("/console").await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/console/orgs/acme/teams/checkout");
    let r = as_team("/console/orgs/acme/teams/checkout").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("/agent/provider") && !html.contains("Integrations</a>"));
    for path in [
        "/console/orgs/acme/integrations",
        "/console/orgs/acme/events",
    ] {
        assert_eq!(
            as_team(path).await.unwrap().status().as_u16(),
            403,
            "{path}"
        );
    }
    let (admin_cookie, _) = sign_in(&http, o, stack::ADMIN, &[]).await.unwrap();
    let r = http
        .get(format!("{o}/console"))
        .header("cookie", admin_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("/console/orgs/acme") && html.contains("/console/orgs/beta"));

    // A form without the session's CSRF secret, or from another site, changes nothing.
    let (_, html, _) = get(format!("/console/orgs/acme/events/{}", seeded.dead_event)).await;
    let secret = csrf_of(&html);
    let replay = format!("{o}/console/orgs/acme/events/{}/replay", seeded.dead_event);
    for (form, origin) in [
        (vec![("csrf", "0".repeat(32))], None),
        (vec![], None),
        (vec![("csrf", secret.clone())], Some("https://evil.example")),
    ] {
        let mut req = http.post(&replay).header("cookie", &cookie).form(&form);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), 403);
    }
    let r = http
        .post(&replay)
        .header("cookie", &cookie)
        .form(&[("csrf", secret.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let ev = s
        .must(
            Method::GET,
            format!("{o}/api/v1/orgs/acme/events/{}", seeded.dead_event),
            None,
        )
        .await;
    let replays = ev["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "replayed")
        .count();
    assert_eq!(replays, 1, "only the form with its secret replayed: {ev}");

    // A tampered cookie, then a revoked token, sign the browser out.
    let mut tampered = cookie.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let r = http
        .get(format!("{o}/console/orgs/acme"))
        .header("cookie", tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    s.must(
        Method::DELETE,
        format!(
            "{}/api/v1/orgs/acme/admin-tokens/{}",
            s.cs, seeded.alice_token_id
        ),
        None,
    )
    .await;
    eventually("the revoked token's session ends", 30, || async {
        let (status, _, _) = get("/console/orgs/acme/events".to_owned()).await;
        status == 303
    })
    .await;
}

switchyard_common::on_both_backends!(sessions_are_sealed_and_every_form_needs_its_secret);

/// Chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._profile);
    }
}

fn chromedriver() -> Option<Driver> {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let profile = std::env::temp_dir().join(format!("sy-console-chromium-{port}"));
    Some(Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    })
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1280,900", format!("--user-data-dir={}", driver._profile.display())]}),
    );
    let http = reqwest::Client::new();
    eventually("chromedriver answers", 30, || async {
        http.get(format!("{}/status", driver.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shoot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Clicks `selector`, then waits for the page it leads to (one showing `shown`, a CSS selector the
/// page before does not have): a click returns before the navigation it starts has finished.
async fn click_through(c: &Client, selector: &str, shown: &str) {
    c.find(Locator::Css(selector))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(std::time::Duration::from_secs(15))
        .for_element(Locator::Css(shown))
        .await
        .unwrap_or_else(|e| panic!("after clicking {selector}, no {shown}: {e}"));
}

async fn text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_admin_replays_a_dead_letter_and_approves_a_change_in_chromium() {
    let Some(driver) = chromedriver() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs chromium and chromium-driver (scripts/test installs them)"
        );
        eprintln!("skipped: no chromedriver (apt-get install chromium chromium-driver)");
        return;
    };
    let s = Stack::start(Backend::Sqlite, options()).await;
    let seeded = seed(&s).await;
    // The agent-runner comes up: a replayed dead letter now reaches it.
    s.start_runner().await;
    let c = browser(&driver).await;
    let o = &s.orch;

    // Sign in: the sign-in page, a wrong token, then Alice's.
    c.goto(&format!("{o}/console/orgs/acme/events"))
        .await
        .unwrap();
    assert!(c.current_url().await.unwrap().path() == "/console/login");
    shoot(&c, "01-sign-in").await;
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("wrong-token-0123456789")
        .await
        .unwrap();
    click_through(&c, "button[type=submit]", "p.error").await;
    assert!(
        text(&c).await.contains("not accepted"),
        "{}",
        text(&c).await
    );
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(&seeded.alice)
        .await
        .unwrap();
    click_through(&c, "button[type=submit]", "form.filters").await;
    // Back where the browser was going.
    assert_eq!(
        c.current_url().await.unwrap().path(),
        "/console/orgs/acme/events",
        "{}",
        text(&c).await
    );
    assert!(text(&c).await.contains("alice@acme.example"));
    assert!(!c.source().await.unwrap().contains(&seeded.alice));

    // Isolation: another org's pages are not found, and say nothing of it.
    c.goto(&format!("{o}/console/orgs/beta/teams/payments"))
        .await
        .unwrap();
    let page = text(&c).await;
    assert!(page.contains("not exist"), "{page}");
    assert!(!page.contains(BETA_TEAM_NAME));

    // The dead letter: select it, replay it; it reaches the agent this time.
    c.goto(&format!(
        "{o}/console/orgs/acme/events?status=dead_lettered"
    ))
    .await
    .unwrap();
    shoot(&c, "02-dead-letters").await;
    c.find(Locator::Css(&format!(
        "input[type=checkbox][value='{}']",
        seeded.dead_event
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    click_through(&c, "button[name=selected]", "p.notice").await;
    assert!(text(&c).await.contains("Replayed 1 event(s)."));
    eventually("the replayed event is dispatched", 30, || async {
        s.events("acme", "dispatched").await.len() == 1
    })
    .await;
    eventually("its agent run has finished", 30, || async {
        s.runs("acme", "succeeded").await.len() == 1
    })
    .await;
    c.goto(&format!(
        "{o}/console/orgs/acme/events/{}",
        seeded.dead_event
    ))
    .await
    .unwrap();
    let page = text(&c).await;
    assert!(
        page.contains("replayed") && page.contains("dispatched"),
        "{page}"
    );
    shoot(&c, "03-event").await;
    click_through(&c, "a[href*='/runs/']", "ol.transcript").await;
    let page = text(&c).await;
    assert!(
        page.contains("Transcript") && page.contains("succeeded"),
        "{page}"
    );
    shoot(&c, "04-run").await;

    // The pending change: approve it (Alice did not propose it), and it is applied.
    c.goto(&format!("{o}/console/orgs/acme/changes"))
        .await
        .unwrap();
    let page = text(&c).await;
    assert!(
        page.contains("What it changes in the layer") && page.contains("/agent/prompts"),
        "{page}"
    );
    shoot(&c, "05-approvals").await;
    click_through(
        &c,
        &format!("#change-{} button[name=approve]", seeded.change),
        "p.notice",
    )
    .await;
    let page = text(&c).await;
    assert!(
        page.contains("Change approved") && page.contains("No change awaits approval"),
        "{page}"
    );
    let layer = s
        .must(
            Method::GET,
            format!("{}/api/v1/orgs/acme/nodes/checkout/config/layer", s.cs),
            None,
        )
        .await;
    assert_eq!(
        layer["layer"]["agent"]["prompts"]["system"],
        "You are Checkout's incident agent. Start with the payment gateway."
    );

    // The team's config, where each value comes from, and the diff the approval made.
    c.goto(&format!("{o}/console/orgs/acme/teams/checkout?from=1&to=2"))
        .await
        .unwrap();
    let page = text(&c).await;
    assert!(page.contains("/agent/prompts"), "{page}");
    shoot(&c, "06-team-config").await;
    for (path, name) in [
        ("/console/orgs/acme", "07-teams"),
        ("/console/orgs/acme/integrations", "08-integrations"),
        ("/console/orgs/acme/incidents", "09-incidents"),
        ("/console/orgs/acme/audit", "10-audit"),
    ] {
        c.goto(&format!("{o}{path}")).await.unwrap();
        assert!(!text(&c).await.contains("Refused"), "{path}");
        shoot(&c, name).await;
    }
    assert!(text(&c).await.contains("Chain intact"));
    c.close().await.unwrap();
}

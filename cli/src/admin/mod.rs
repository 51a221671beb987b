//! Admin verbs over the REST API: `switchyard orgs|teams|config|tokens|integrations|events|runs|
//! audit|secrets ...`.
//!
//! - this file: the connection flags, the HTTP client, failures and their exit codes, output;
//! - [`tenants`]: organisations and teams (onboard and offboard through provisioning);
//! - [`settings`]: configuration (explain, set with If-Match, history, diff), tokens, secrets;
//! - [`traffic`]: integrations, events, agent runs, the audit log;
//! - `layers`: a layer at an earlier version, for `config diff`.
//!
//! The token comes from `SWITCHYARD_TOKEN` or `--token-file`, never from a flag (flags end up in
//! shell histories and process lists). Tables by default, `--json` prints the API's own JSON.

pub mod settings;
pub mod tenants;
pub mod traffic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

/// Where the API is and who is calling.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The config-service's base URL (organisations, teams, config, tokens, secrets, runs, audit).
    #[arg(
        long,
        env = "SWITCHYARD_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub url: String,
    /// The orchestrator's base URL (integrations, events, onboarding).
    #[arg(
        long,
        env = "SWITCHYARD_ORCHESTRATOR_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub orchestrator_url: String,
    /// A file holding the bearer token (otherwise SWITCHYARD_TOKEN).
    #[arg(long, env = "SWITCHYARD_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// The organisation (default: the token's own).
    #[arg(long, env = "SWITCHYARD_ORG", global = true)]
    pub org: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Why a command failed, and the exit code that says so to scripts.
#[derive(Debug)]
pub enum Failure {
    /// 404: exit 3.
    NotFound(String),
    /// 409 or 412 (a stale If-Match): exit 4.
    Conflict(String),
    /// 400 or 422, or bad input on the command line: exit 5.
    Invalid(String),
    /// 401 or 403: exit 6.
    Denied(String),
    /// 5xx, 429 or no answer: exit 7.
    Unavailable(String),
    /// Anything else: exit 1.
    Other(String),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::NotFound(_) => 3,
            Failure::Conflict(_) => 4,
            Failure::Invalid(_) => 5,
            Failure::Denied(_) => 6,
            Failure::Unavailable(_) => 7,
            Failure::Other(_) => 1,
        })
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::NotFound(m)
            | Failure::Conflict(m)
            | Failure::Invalid(m)
            | Failure::Denied(m)
            | Failure::Unavailable(m)
            | Failure::Other(m) => m,
        }
    }

    fn of_status(status: u16, detail: String) -> Self {
        match status {
            404 => Failure::NotFound(detail),
            409 | 412 | 428 => Failure::Conflict(detail),
            400 | 413 | 415 | 422 => Failure::Invalid(detail),
            401 | 403 => Failure::Denied(detail),
            429 | 500..=599 => Failure::Unavailable(detail),
            _ => Failure::Other(detail),
        }
    }
}

pub type Outcome<T = ()> = Result<T, Failure>;

/// Which service a request goes to.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    Config,
    Orchestrator,
}

/// An answer: its body (JSON, or `Null` when empty) and its ETag.
pub struct Answer {
    pub body: Value,
    pub etag: Option<String>,
}

pub struct Api {
    args: ApiArgs,
    token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(args: ApiArgs) -> Outcome<Self> {
        let token = match &args.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| Failure::Invalid(format!("reading {}: {e}", path.display())))?,
            None => std::env::var("SWITCHYARD_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    Failure::Invalid(
                        "no token: set SWITCHYARD_TOKEN or pass --token-file (the platform admin \
                     token `switchyard dev` printed, an org admin token or a team token)"
                            .into(),
                    )
                })?,
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::Other(e.to_string()))?;
        Ok(Self {
            args,
            token: token.trim().to_owned(),
            http,
        })
    }

    pub fn json(&self) -> bool {
        self.args.json
    }

    /// The organisation to act in: `--org`, else the token's own.
    pub async fn org(&self) -> Outcome<String> {
        if let Some(org) = &self.args.org {
            return Ok(org.clone());
        }
        let me = self.get(Service::Config, "/api/v1/me").await?;
        me["org_id"].as_str().map(str::to_owned).ok_or_else(|| {
            Failure::Invalid("this token belongs to no organisation: pass --org".into())
        })
    }

    pub async fn get(&self, to: Service, path: &str) -> Outcome<Value> {
        Ok(self.send(to, Method::GET, path, None, None).await?.body)
    }

    pub async fn post(&self, to: Service, path: &str, body: Value) -> Outcome<Value> {
        Ok(self
            .send(to, Method::POST, path, Some(body), None)
            .await?
            .body)
    }

    pub async fn delete(&self, to: Service, path: &str) -> Outcome<Value> {
        Ok(self.send(to, Method::DELETE, path, None, None).await?.body)
    }

    /// One request; an answer other than 2xx becomes the [`Failure`] its status means, with the
    /// problem's `detail` (and its field errors) as the message.
    pub async fn send(
        &self,
        to: Service,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Outcome<Answer> {
        let base = match to {
            Service::Config => &self.args.url,
            Service::Orchestrator => &self.args.orchestrator_url,
        };
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(tag) = if_match {
            req = req.header("if-match", tag);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Unavailable(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        if (200..300).contains(&status) {
            return Ok(Answer { body, etag });
        }
        Err(Failure::of_status(status, problem_detail(status, &body)))
    }
}

/// A problem's `detail`, its field errors after it.
fn problem_detail(status: u16, body: &Value) -> String {
    let mut out = body["detail"]
        .as_str()
        .or(body["title"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| match body {
            Value::String(s) if !s.is_empty() => s.chars().take(300).collect(),
            _ => format!("HTTP {status}"),
        });
    for e in body["errors"].as_array().into_iter().flatten() {
        let field = e["field"].as_str().or(e["pointer"].as_str()).unwrap_or("");
        let why = e["message"].as_str().or(e["detail"].as_str()).unwrap_or("");
        out.push_str(&format!("\n  {field}: {why}"));
    }
    out
}

pub use switchyard_common::text::percent_encode as enc;

/// `?a=1&b=2` of the pairs that have a value.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let pairs: Vec<(&str, Option<&str>)> = pairs.iter().map(|(k, v)| (*k, v.as_deref())).collect();
    switchyard_common::text::query(&pairs)
}

/// Prints `rows` as a table of `columns` (header, JSON pointer into each row).
pub fn table(rows: &[Value], columns: &[(&str, &str)]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|(_, p)| cell(r.pointer(p))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<&str>| {
        let padded: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|(h, _)| *h).collect());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
}

/// One cell: strings as they are (cut at 60 characters), nothing as `-`.
fn cell(v: Option<&Value>) -> String {
    let s = match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| cell(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(59).collect::<String>())
    } else {
        s
    }
}

/// Prints JSON, pretty.
pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

pub(crate) fn read_json(path: &Path) -> Outcome<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Invalid(format!("reading {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Failure::Invalid(format!("{} is not JSON: {e}", path.display())))
}

impl Api {
    /// Prints `v` as JSON under `--json`, otherwise the human form `human` prints.
    pub(crate) fn emit(&self, v: &Value, human: impl FnOnce()) {
        if self.json() {
            print_json(v);
        } else {
            human();
        }
    }
}

pub(crate) fn show(api: &Api, v: &Value, list: bool, columns: &[(&str, &str)]) {
    if api.json() {
        print_json(v);
    } else if list {
        let rows = v["items"]
            .as_array()
            .or(v.as_array())
            .cloned()
            .unwrap_or_default();
        table(&rows, columns);
    } else {
        table(std::slice::from_ref(v), columns);
    }
}

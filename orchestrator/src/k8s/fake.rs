//! A stateful in-process fake of the Kubernetes API server, for tests and benchmarks.
//!
//! It is an axum router, which is a tower service, so [`kube::Client::new`] talks to it through
//! exactly the client code production uses. It keeps objects with a cluster-wide
//! `resourceVersion`, and supports get, list (with equality label selectors), create, server-side
//! apply (creates or replaces the applied fields; a single field manager is all Switchyard needs),
//! JSON merge patch, delete, and watch (newline-delimited events from a resource version). Errors
//! are Kubernetes `Status` objects (404 NotFound, 409 AlreadyExists, 422 Invalid). Failures can be
//! injected per verb and resource, and every request is recorded for request-level assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: String,
}

#[derive(Debug, Clone)]
struct Failure {
    method: Method,
    plural: String,
    code: u16,
    /// Matching requests to let through first.
    skip: usize,
    remaining: usize,
}

#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    kind: &'static str,
    plural: String,
    namespace: String,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<(String, String, String), Value>,
    history: Vec<Change>,
    failures: Vec<Failure>,
    requests: Vec<Recorded>,
}

/// The fake cluster; clone it freely (shared state).
#[derive(Clone)]
pub struct FakeApiServer {
    inner: Arc<Mutex<Inner>>,
    changes: broadcast::Sender<Change>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

fn status(code: u16, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message.into(), "reason": reason, "code": code});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn kind_of(plural: &str) -> Option<(&'static str, &'static str)> {
    match plural {
        "secrets" => Some(("Secret", "v1")),
        "cronjobs" => Some(("CronJob", "batch/v1")),
        "jobs" => Some(("Job", "batch/v1")),
        "configmaps" => Some(("ConfigMap", "v1")),
        _ => None,
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equality label selectors (`a=b,c=d`, also `a==b`), and `a` (exists).
fn matches_selector(obj: &Value, selector: &str) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            return labels.and_then(|l| l.get(k)).and_then(Value::as_str) != Some(v);
        }
        match term.split_once("==").or_else(|| term.split_once('=')) {
            Some((k, v)) => labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v),
            None => labels.is_some_and(|l| l.contains_key(term)),
        }
    })
}

impl FakeApiServer {
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(4096);
        Self {
            inner: Arc::default(),
            changes,
        }
    }

    /// A kube client talking to this fake, with `namespace` as default.
    pub fn client(&self, namespace: &str) -> kube::Client {
        kube::Client::new(self.router(), namespace)
    }

    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(handle)
            .with_state(self.clone())
    }

    /// The next `times` requests of `method` on `plural` fail with `code`.
    pub fn fail(&self, method: Method, plural: &str, code: u16, times: usize) {
        self.fail_after(method, plural, code, 0, times);
    }

    /// Lets `skip` matching requests through, then fails the next `times`.
    pub fn fail_after(&self, method: Method, plural: &str, code: u16, skip: usize, times: usize) {
        self.inner.lock().unwrap().failures.push(Failure {
            method,
            plural: plural.into(),
            code,
            skip,
            remaining: times,
        });
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.inner.lock().unwrap().requests.clear();
    }

    /// A stored object, as the API would return it.
    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.inner
            .lock()
            .unwrap()
            .objects
            .get(&(plural.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// Every stored object of a kind in a namespace.
    pub fn objects(&self, plural: &str, namespace: &str) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .objects
            .iter()
            .filter(|((p, ns, _), _)| p == plural && ns == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Changes an object behind Switchyard's back (an out-of-band `kubectl edit`).
    pub fn edit(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> bool {
        let mut inner = self.inner.lock().unwrap();
        let key = (plural.to_owned(), namespace.to_owned(), name.to_owned());
        let Some(mut obj) = inner.objects.get(&key).cloned() else {
            return false;
        };
        f(&mut obj);
        self.store(&mut inner, plural, namespace, name, obj, "MODIFIED");
        true
    }

    /// Deletes an object behind Switchyard's back.
    pub fn remove(&self, plural: &str, namespace: &str, name: &str) -> bool {
        let mut inner = self.inner.lock().unwrap();
        self.delete_locked(&mut inner, plural, namespace, name)
            .is_some()
    }

    /// Puts an object in (for orphans created by someone else).
    pub fn insert(&self, plural: &str, namespace: &str, obj: Value) {
        let mut inner = self.inner.lock().unwrap();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.store(&mut inner, plural, namespace, &name, obj, "ADDED");
    }

    fn store(
        &self,
        inner: &mut Inner,
        plural: &str,
        namespace: &str,
        name: &str,
        mut obj: Value,
        event: &'static str,
    ) -> Value {
        inner.rv += 1;
        let rv = inner.rv;
        if let Some((kind, api)) = kind_of(plural) {
            obj["kind"] = json!(kind);
            obj["apiVersion"] = json!(api);
        }
        let meta = obj
            .as_object_mut()
            .expect("objects are JSON objects")
            .entry("metadata")
            .or_insert(json!({}));
        meta["name"] = json!(name);
        meta["namespace"] = json!(namespace);
        meta["resourceVersion"] = json!(rv.to_string());
        if meta.get("uid").is_none() {
            meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
            meta["creationTimestamp"] = json!(
                switchyard_common::time::rfc3339(switchyard_common::time::now_ms())
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
                    + "Z"
            );
        }
        if plural == "secrets"
            && let Some(sd) = obj.get("stringData").and_then(Value::as_object).cloned()
        {
            let data = obj
                .as_object_mut()
                .unwrap()
                .entry("data")
                .or_insert(json!({}));
            for (k, v) in sd {
                data[&k] = json!(
                    base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or_default())
                );
            }
            obj.as_object_mut().unwrap().remove("stringData");
        }
        inner
            .objects
            .insert((plural.into(), namespace.into(), name.into()), obj.clone());
        let change = Change {
            rv,
            kind: event,
            plural: plural.into(),
            namespace: namespace.into(),
            object: obj.clone(),
        };
        inner.history.push(change.clone());
        let _ = self.changes.send(change);
        obj
    }

    fn delete_locked(
        &self,
        inner: &mut Inner,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let mut obj = inner
            .objects
            .remove(&(plural.into(), namespace.into(), name.into()))?;
        inner.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        let change = Change {
            rv: inner.rv,
            kind: "DELETED",
            plural: plural.into(),
            namespace: namespace.into(),
            object: obj.clone(),
        };
        inner.history.push(change.clone());
        let _ = self.changes.send(change);
        Some(obj)
    }
}

async fn handle(
    State(fake): State<FakeApiServer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/namespaces/{ns}/{plural}[/{name}] or /apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]
    let rest = match segs.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return status(404, "NotFound", format!("the fake has no {path}")),
    };
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (ns.to_string(), plural.to_string(), None),
        ["namespaces", ns, plural, name] => {
            (ns.to_string(), plural.to_string(), Some(name.to_string()))
        }
        _ => return status(404, "NotFound", format!("the fake has no {path}")),
    };
    {
        let mut inner = fake.inner.lock().unwrap();
        inner.requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if let Some(f) = inner
            .failures
            .iter_mut()
            .find(|f| f.method == method && f.plural == plural && (f.remaining > 0 || f.skip > 0))
        {
            if f.skip > 0 {
                f.skip -= 1;
            } else {
                f.remaining -= 1;
                let code = f.code;
                return status(
                    code,
                    "InternalError",
                    format!("injected failure for {method} {plural}"),
                );
            }
        }
    }
    let Some((kind, api_version)) = kind_of(&plural) else {
        return status(404, "NotFound", format!("the fake does not serve {plural}"));
    };
    match (method.clone(), name) {
        (Method::GET, Some(name)) => match fake.object(&plural, &namespace, &name) {
            Some(o) => axum::Json(o).into_response(),
            None => status(404, "NotFound", format!("{plural} \"{name}\" not found")),
        },
        (Method::GET, None) => {
            let selector = query_param(&query, "labelSelector")
                .map(decode)
                .unwrap_or_default();
            if matches!(query_param(&query, "watch"), Some("true") | Some("1")) {
                let from: u64 = query_param(&query, "resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                return watch(fake, plural, namespace, selector, from).await;
            }
            let inner = fake.inner.lock().unwrap();
            let items: Vec<Value> = inner
                .objects
                .iter()
                .filter(|((p, ns, _), o)| {
                    *p == plural && *ns == namespace && matches_selector(o, &selector)
                })
                .map(|(_, o)| o.clone())
                .collect();
            axum::Json(json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items})).into_response()
        }
        (Method::POST, None) => {
            let Ok(obj) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let Some(name) = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                return status(422, "Invalid", "metadata.name: Required value");
            };
            let mut inner = fake.inner.lock().unwrap();
            if inner
                .objects
                .contains_key(&(plural.clone(), namespace.clone(), name.clone()))
            {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{plural} \"{name}\" already exists"),
                );
            }
            let stored = fake.store(&mut inner, &plural, &namespace, &name, obj, "ADDED");
            (StatusCode::CREATED, axum::Json(stored)).into_response()
        }
        (Method::PATCH, Some(name)) => {
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let mut inner = fake.inner.lock().unwrap();
            let key = (plural.clone(), namespace.clone(), name.clone());
            let existing = inner.objects.get(&key).cloned();
            if content_type.starts_with("application/apply-patch") {
                if query_param(&query, "fieldManager").is_none_or(str::is_empty) {
                    return status(
                        422,
                        "Invalid",
                        "fieldManager is required for apply requests",
                    );
                }
                if patch.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
                    return status(
                        422,
                        "Invalid",
                        "metadata.name must match the name in the path",
                    );
                }
                let created = existing.is_none();
                let mut obj = patch;
                if let Some(old) = existing {
                    // The applied configuration replaces the manager's fields; identity stays.
                    for k in ["uid", "creationTimestamp"] {
                        if let Some(v) = old.pointer(&format!("/metadata/{k}")) {
                            obj["metadata"][k] = v.clone();
                        }
                    }
                    if let Some(status) = old.get("status") {
                        obj["status"] = status.clone();
                    }
                }
                let event = if created { "ADDED" } else { "MODIFIED" };
                let stored = fake.store(&mut inner, &plural, &namespace, &name, obj, event);
                (
                    if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    },
                    axum::Json(stored),
                )
                    .into_response()
            } else if content_type.starts_with("application/merge-patch+json") {
                let Some(mut obj) = existing else {
                    return status(404, "NotFound", format!("{plural} \"{name}\" not found"));
                };
                merge(&mut obj, &patch);
                let stored = fake.store(&mut inner, &plural, &namespace, &name, obj, "MODIFIED");
                axum::Json(stored).into_response()
            } else {
                status(
                    415,
                    "UnsupportedMediaType",
                    format!("the fake does not take {content_type} patches"),
                )
            }
        }
        (Method::DELETE, Some(name)) => {
            let mut inner = fake.inner.lock().unwrap();
            match fake.delete_locked(&mut inner, &plural, &namespace, &name) {
                Some(o) => axum::Json(o).into_response(),
                None => status(404, "NotFound", format!("{plural} \"{name}\" not found")),
            }
        }
        _ => status(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        ),
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Newline-delimited watch events after `from`, then live ones.
async fn watch(
    fake: FakeApiServer,
    plural: String,
    namespace: String,
    selector: String,
    from: u64,
) -> Response {
    // Subscribe before reading the backlog, so nothing falls between the two.
    let rx = fake.changes.subscribe();
    let backlog: Vec<Change> = {
        let inner = fake.inner.lock().unwrap();
        inner
            .history
            .iter()
            .filter(|c| c.rv > from && c.plural == plural && c.namespace == namespace)
            .cloned()
            .collect()
    };
    let line =
        |c: &Change| Bytes::from(format!("{}\n", json!({"type": c.kind, "object": c.object})));
    let first: Vec<Result<Bytes, std::io::Error>> = backlog
        .iter()
        .filter(|c| matches_selector(&c.object, &selector))
        .map(|c| Ok(line(c)))
        .collect();
    let last_rv = backlog.last().map(|c| c.rv).unwrap_or(from);
    let live = futures_util::stream::unfold((rx, last_rv), move |(mut rx, seen)| {
        let (plural, namespace, selector) = (plural.clone(), namespace.clone(), selector.clone());
        async move {
            loop {
                match rx.recv().await {
                    Ok(c)
                        if c.rv > seen
                            && c.plural == plural
                            && c.namespace == namespace
                            && matches_selector(&c.object, &selector) =>
                    {
                        let rv = c.rv;
                        return Some((
                            Ok::<Bytes, std::io::Error>(Bytes::from(format!(
                                "{}\n",
                                json!({"type": c.kind, "object": c.object})
                            ))),
                            (rx, rv),
                        ));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter(first), live);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

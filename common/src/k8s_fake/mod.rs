//! A stateful in-process fake of the Kubernetes API server, for tests and benchmarks.
//!
//! It is an axum router, which is a tower service, so [`kube::Client::new`] talks to it through
//! exactly the client code production uses. It keeps objects with a cluster-wide
//! `resourceVersion`, and supports get, list (with equality label selectors), create, server-side
//! apply (creates or replaces the applied fields; a single field manager is all Switchyard needs),
//! JSON merge patch, delete, and watch (newline-delimited events from a resource version). Errors
//! are Kubernetes `Status` objects (404 NotFound, 409 AlreadyExists, 422 Invalid). Failures can be
//! injected per verb and resource, and every request is recorded for request-level assertions.
//!
//! This file holds the state and what tests call; `api.rs` answers the API's requests.

mod api;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
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
    /// Container logs by (namespace, pod, container); `previous` logs under the container name
    /// suffixed with `/previous`.
    logs: BTreeMap<(String, String, String), String>,
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
        "pods" => Some(("Pod", "v1")),
        "events" => Some(("Event", "v1")),
        "services" => Some(("Service", "v1")),
        "persistentvolumeclaims" => Some(("PersistentVolumeClaim", "v1")),
        "namespaces" => Some(("Namespace", "v1")),
        "deployments" => Some(("Deployment", "apps/v1")),
        "replicasets" => Some(("ReplicaSet", "apps/v1")),
        "statefulsets" => Some(("StatefulSet", "apps/v1")),
        "daemonsets" => Some(("DaemonSet", "apps/v1")),
        "ingresses" => Some(("Ingress", "networking.k8s.io/v1")),
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

/// Equality field selectors over dotted paths (`involvedObject.name=web,metadata.name!=x`).
fn matches_fields(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (path, want, negate) = match term.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((k, v)) => (k, v, false),
                None => return false,
            },
        };
        let pointer = format!("/{}", path.replace('.', "/"));
        let have = obj.pointer(&pointer).and_then(Value::as_str).unwrap_or("");
        (have == want) != negate
    })
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
            .fallback(api::handle)
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

    /// Sets what `pods/{pod}/log` answers for `container` (`container/previous`: the last
    /// terminated instance's logs).
    pub fn set_logs(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        self.inner.lock().unwrap().logs.insert(
            (namespace.into(), pod.into(), container.into()),
            text.into(),
        );
    }

    /// Puts an object in (for orphans created by someone else). Cluster-scoped objects
    /// (namespaces) take `""` as their namespace.
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
        if !namespace.is_empty() {
            meta["namespace"] = json!(namespace);
        }
        meta["resourceVersion"] = json!(rv.to_string());
        if meta.get("uid").is_none() {
            meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
            meta["creationTimestamp"] = json!(
                crate::time::rfc3339(crate::time::now_ms())
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

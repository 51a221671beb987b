//! The API server's requests: routing a path to get, list, create, apply, patch, delete or watch.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::*;

pub(super) async fn handle(
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
    fake.inner.lock().unwrap().requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/namespaces/{ns}/{plural}[/{name}] or /apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]
    let rest = match segs.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return status(404, "NotFound", format!("the fake has no {path}")),
    };
    let (namespace, plural, name) = match rest {
        ["namespaces"] => (String::new(), "namespaces".to_owned(), None),
        ["namespaces", name] => (
            String::new(),
            "namespaces".to_owned(),
            Some(name.to_string()),
        ),
        ["namespaces", ns, "pods", pod, "log"] if method == Method::GET => {
            return logs(&fake, ns, pod, &query);
        }
        ["namespaces", ns, plural] => (ns.to_string(), plural.to_string(), None),
        ["namespaces", ns, plural, name] => {
            (ns.to_string(), plural.to_string(), Some(name.to_string()))
        }
        _ => return status(404, "NotFound", format!("the fake has no {path}")),
    };
    {
        let mut inner = fake.inner.lock().unwrap();
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
            let fields = query_param(&query, "fieldSelector")
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
                    *p == plural
                        && *ns == namespace
                        && matches_selector(o, &selector)
                        && matches_fields(o, &fields)
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

/// `pods/{pod}/log`: the text set for the container (the only one if the pod has one), its
/// `previous` instance's with `previous=true`, the last `tailLines` lines.
fn logs(fake: &FakeApiServer, namespace: &str, pod: &str, query: &str) -> Response {
    let inner = fake.inner.lock().unwrap();
    if !inner
        .objects
        .contains_key(&("pods".into(), namespace.into(), pod.into()))
    {
        return status(404, "NotFound", format!("pods \"{pod}\" not found"));
    }
    let mut container = query_param(query, "container").map(decode);
    if container.is_none() {
        let names: Vec<&String> = inner
            .logs
            .keys()
            .filter(|(ns, p, c)| ns == namespace && p == pod && !c.ends_with("/previous"))
            .map(|(_, _, c)| c)
            .collect();
        match names.as_slice() {
            [one] => container = Some((*one).clone()),
            [] => return (StatusCode::OK, String::new()).into_response(),
            _ => {
                return status(
                    400,
                    "BadRequest",
                    format!("a container name must be specified for pod {pod}"),
                );
            }
        }
    }
    let mut key = container.unwrap_or_default();
    if matches!(query_param(query, "previous"), Some("true")) {
        key.push_str("/previous");
    }
    let Some(text) = inner.logs.get(&(namespace.into(), pod.into(), key.clone())) else {
        return status(
            400,
            "BadRequest",
            format!("previous terminated container {key:?} in pod {pod:?} not found"),
        );
    };
    let tail: Option<usize> = query_param(query, "tailLines").and_then(|v| v.parse().ok());
    let lines: Vec<&str> = text.lines().collect();
    let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = lines[from..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    (StatusCode::OK, out).into_response()
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

//! `kubernetes_get`, `kubernetes_logs`, `kubernetes_events`: read-only views of the cluster the
//! runner runs in, through kube-rs.
//!
//! Isolation is two checks, both before any read, for every call:
//! - the namespace is one the team's config lists (`toolsets.kubernetes.namespaces`);
//! - the namespace carries the label `switchyard.dev/org=<the run's org>`. Whoever runs the
//!   cluster assigns namespaces to organisations; an org admin's config cannot name another
//!   org's namespace and read it (ADR 0010).
//!
//! Secrets are never read, whatever the model asks. Answers are compact summaries (a pod's phase,
//! its containers' restarts and last termination reason; a workload's replicas), not raw objects.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, LogParams};
use serde_json::{Value, json};

use crate::agent::tools::Tool;
use crate::messages::ToolSpec;

/// The label that assigns a namespace to an organisation.
pub const ORG_LABEL: &str = "switchyard.dev/org";
/// Most objects of one list the model reads.
const MAX_ITEMS: usize = 100;
/// Most events the model reads.
const MAX_EVENTS: usize = 50;
/// Log lines by default, and at most.
const DEFAULT_TAIL: i64 = 200;
const MAX_TAIL: i64 = 2000;
/// Most bytes of logs read from the API server.
const MAX_LOG_BYTES: i64 = 256 * 1024;

/// The kinds `kubernetes_get` reads: (plural, group, version, kind).
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("pods", "", "v1", "Pod"),
    ("services", "", "v1", "Service"),
    ("configmaps", "", "v1", "ConfigMap"),
    ("persistentvolumeclaims", "", "v1", "PersistentVolumeClaim"),
    ("events", "", "v1", "Event"),
    ("deployments", "apps", "v1", "Deployment"),
    ("replicasets", "apps", "v1", "ReplicaSet"),
    ("statefulsets", "apps", "v1", "StatefulSet"),
    ("daemonsets", "apps", "v1", "DaemonSet"),
    ("jobs", "batch", "v1", "Job"),
    ("cronjobs", "batch", "v1", "CronJob"),
    ("ingresses", "networking.k8s.io", "v1", "Ingress"),
];

/// The cluster as one run's team may see it.
pub struct Cluster {
    client: kube::Client,
    org: String,
    namespaces: Vec<String>,
    /// Namespaces whose org label this run has checked.
    checked: Mutex<BTreeSet<String>>,
}

impl Cluster {
    /// The view for `org` of `toolsets.kubernetes`; `None` when the team lists no namespace.
    pub fn from_config(client: kube::Client, org: &str, v: Option<&Value>) -> Option<Arc<Self>> {
        let namespaces: Vec<String> = v?
            .get("namespaces")?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        (!namespaces.is_empty()).then(|| {
            Arc::new(Self {
                client,
                org: org.to_owned(),
                namespaces,
                checked: Mutex::default(),
            })
        })
    }

    /// The namespace a call names (or the team's only one), once both isolation checks pass.
    async fn namespace(&self, args: &Value) -> Result<String, String> {
        let ns = match args.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() => ns.to_owned(),
            _ if self.namespaces.len() == 1 => self.namespaces[0].clone(),
            _ => {
                return Err(format!(
                    "the argument \"namespace\" is required: one of {}",
                    self.namespaces.join(", ")
                ));
            }
        };
        if !self.namespaces.contains(&ns) {
            return Err(format!(
                "namespace {ns:?} is not one this team may read; it may read {}",
                self.namespaces.join(", ")
            ));
        }
        if self.checked.lock().unwrap().contains(&ns) {
            return Ok(ns);
        }
        let found = Api::<Namespace>::all(self.client.clone())
            .get_opt(&ns)
            .await
            .map_err(|e| format!("reading namespace {ns}: {e}"))?;
        let owner = found
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .and_then(|l| l.get(ORG_LABEL));
        if owner.map(String::as_str) != Some(self.org.as_str()) {
            return Err(format!(
                "namespace {ns:?} is not assigned to this organisation (its label {ORG_LABEL} must name it)"
            ));
        }
        self.checked.lock().unwrap().insert(ns.clone());
        Ok(ns)
    }
}

pub struct KubernetesGet(pub Arc<Cluster>);
pub struct KubernetesLogs(pub Arc<Cluster>);
pub struct KubernetesEvents(pub Arc<Cluster>);

fn str_arg<'a>(args: &'a Value, name: &str) -> Option<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The kind a model names (`pod`, `Pods`, `deployment`...), as an API resource.
fn resource(kind: &str) -> Result<ApiResource, String> {
    let k = kind.to_ascii_lowercase();
    if k.starts_with("secret") {
        return Err("secrets are never readable by the agent".into());
    }
    let (plural, group, version, kind) = KINDS
        .iter()
        .find(|(plural, _, _, kind)| {
            *plural == k
                || kind.to_ascii_lowercase() == k
                || plural.trim_end_matches('s') == k.trim_end_matches('s')
        })
        .ok_or_else(|| {
            format!(
                "unknown kind {kind:?}: one of {}",
                KINDS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
            )
        })?;
    Ok(ApiResource {
        group: (*group).into(),
        version: (*version).into(),
        api_version: if group.is_empty() {
            (*version).into()
        } else {
            format!("{group}/{version}")
        },
        kind: (*kind).into(),
        plural: (*plural).into(),
    })
}

/// What the model reads of an object: its name and labels, and a summary of its status.
fn summary(kind: &str, o: &Value) -> Value {
    let name = o.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    match kind {
        "Pod" => {
            let containers: Vec<Value> = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    let state = c.get("state").and_then(Value::as_object);
                    let now = state.and_then(|s| s.iter().next()).map(|(k, v)| {
                        json!({"state": k, "reason": v.get("reason"), "exit_code": v.get("exitCode")})
                    });
                    let last = c
                        .pointer("/lastState/terminated")
                        .map(|t| json!({"reason": t.get("reason"), "exit_code": t.get("exitCode"), "finished_at": t.get("finishedAt")}));
                    json!({"name": c.get("name"), "ready": c.get("ready"), "restarts": c.get("restartCount"),
                           "now": now, "last_terminated": last, "image": c.get("image")})
                })
                .collect();
            json!({"name": name, "phase": o.pointer("/status/phase"), "node": o.pointer("/spec/nodeName"),
                   "reason": o.pointer("/status/reason"), "containers": containers})
        }
        "Deployment" | "StatefulSet" | "ReplicaSet" | "DaemonSet" => {
            let images: Vec<&Value> = o
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("image"))
                .collect();
            json!({"name": name, "replicas": o.pointer("/spec/replicas"), "status": o.get("status"), "images": images,
                   "generation": o.pointer("/metadata/generation")})
        }
        _ => {
            json!({"name": name, "labels": o.pointer("/metadata/labels"), "status": o.get("status")})
        }
    }
}

/// One object as the model reads it: without managed fields and the last-applied annotation.
fn cleaned(mut o: Value) -> Value {
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    o
}

/// What the model sees of each tool, for a team reading `namespaces`.
pub fn get_spec(namespaces: &[String]) -> ToolSpec {
    ToolSpec {
        name: "kubernetes_get".into(),
        description: format!(
            "Read Kubernetes objects (read-only) in the team's namespaces ({}): one by name, or a list filtered by label selector, summarised (pods: phase, restarts, last termination reason).",
            namespaces.join(", ")
        ),
        parameters: json!({"type": "object", "required": ["kind"], "properties": {
            "kind": {"type": "string", "description": KINDS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")},
            "namespace": {"type": "string", "enum": namespaces},
            "name": {"type": "string", "description": "one object; all of the kind when absent"},
            "label_selector": {"type": "string", "description": "e.g. app=checkout"}}}),
    }
}

pub fn logs_spec(namespaces: &[String]) -> ToolSpec {
    ToolSpec {
        name: "kubernetes_logs".into(),
        description: "Read a pod's container logs (the last lines; previous=true for the instance that crashed).".into(),
        parameters: json!({"type": "object", "required": ["pod"], "properties": {
            "pod": {"type": "string"},
            "namespace": {"type": "string", "enum": namespaces},
            "container": {"type": "string", "description": "needed when the pod has several"},
            "previous": {"type": "boolean"},
            "tail_lines": {"type": "integer", "description": format!("default {DEFAULT_TAIL}, at most {MAX_TAIL}")}}}),
    }
}

pub fn events_spec(namespaces: &[String]) -> ToolSpec {
    ToolSpec {
        name: "kubernetes_events".into(),
        description: "Recent Kubernetes events in a namespace of the team, newest first, optionally about one object (OOMKilled, BackOff, FailedScheduling...).".into(),
        parameters: json!({"type": "object", "properties": {
            "namespace": {"type": "string", "enum": namespaces},
            "name": {"type": "string", "description": "the involved object's name"},
            "kind": {"type": "string", "description": "the involved object's kind, e.g. Pod"}}}),
    }
}

impl Tool for KubernetesGet {
    fn spec(&self) -> ToolSpec {
        get_spec(&self.0.namespaces)
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let ar = resource(str_arg(args, "kind").ok_or("the argument \"kind\" is required")?)?;
            let ns = self.0.namespace(args).await?;
            let api = Api::<DynamicObject>::namespaced_with(self.0.client.clone(), &ns, &ar);
            if let Some(name) = str_arg(args, "name") {
                let o = api
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("reading {} {name}: {e}", ar.plural))?
                    .ok_or_else(|| format!("{} {name:?} not found in {ns}", ar.kind))?;
                let o = serde_json::to_value(o).map_err(|e| e.to_string())?;
                return Ok(cleaned(o).to_string());
            }
            let mut lp = ListParams::default().limit(MAX_ITEMS as u32);
            if let Some(sel) = str_arg(args, "label_selector") {
                lp = lp.labels(sel);
            }
            let list = api
                .list(&lp)
                .await
                .map_err(|e| format!("listing {}: {e}", ar.plural))?;
            let items: Vec<Value> = list
                .items
                .into_iter()
                .take(MAX_ITEMS)
                .filter_map(|o| serde_json::to_value(o).ok())
                .map(|o| summary(&ar.kind, &o))
                .collect();
            Ok(
                json!({"kind": ar.kind, "namespace": ns, "count": items.len(), "items": items})
                    .to_string(),
            )
        })
    }
}

impl Tool for KubernetesLogs {
    fn spec(&self) -> ToolSpec {
        logs_spec(&self.0.namespaces)
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let pod = str_arg(args, "pod").ok_or("the argument \"pod\" is required")?;
            let ns = self.0.namespace(args).await?;
            let params = LogParams {
                container: str_arg(args, "container").map(str::to_owned),
                previous: args
                    .get("previous")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                tail_lines: Some(
                    args.get("tail_lines")
                        .and_then(Value::as_i64)
                        .unwrap_or(DEFAULT_TAIL)
                        .clamp(1, MAX_TAIL),
                ),
                limit_bytes: Some(MAX_LOG_BYTES),
                ..LogParams::default()
            };
            let text = Api::<Pod>::namespaced(self.0.client.clone(), &ns)
                .logs(pod, &params)
                .await
                .map_err(|e| format!("reading the logs of {pod}: {e}"))?;
            Ok(if text.is_empty() {
                "(no log lines)".into()
            } else {
                text
            })
        })
    }
}

impl Tool for KubernetesEvents {
    fn spec(&self) -> ToolSpec {
        events_spec(&self.0.namespaces)
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let ns = self.0.namespace(args).await?;
            let mut fields = Vec::new();
            if let Some(n) = str_arg(args, "name") {
                fields.push(format!("involvedObject.name={n}"));
            }
            if let Some(k) = str_arg(args, "kind") {
                fields.push(format!("involvedObject.kind={k}"));
            }
            let lp = ListParams::default().fields(&fields.join(","));
            let list =
                Api::<k8s_openapi::api::core::v1::Event>::namespaced(self.0.client.clone(), &ns)
                    .list(&lp)
                    .await
                    .map_err(|e| format!("listing events: {e}"))?;
            let mut events: Vec<Value> = list
                .items
                .into_iter()
                .filter_map(|e| serde_json::to_value(e).ok())
                .map(|e| {
                    let time = ["/lastTimestamp", "/eventTime", "/firstTimestamp", "/metadata/creationTimestamp"]
                        .iter()
                        .find_map(|p| e.pointer(p).and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_default();
                    json!({"time": time, "type": e.get("type"), "reason": e.get("reason"),
                        "object": format!("{}/{}", e.pointer("/involvedObject/kind").and_then(Value::as_str).unwrap_or("?"),
                                           e.pointer("/involvedObject/name").and_then(Value::as_str).unwrap_or("?")),
                        "count": e.get("count"), "message": e.get("message")})
                })
                .collect();
            events.sort_by(|a, b| b["time"].as_str().cmp(&a["time"].as_str()));
            events.truncate(MAX_EVENTS);
            Ok(json!({"namespace": ns, "events": events}).to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_by_any_usual_name_and_secrets_never() {
        for k in ["pod", "Pods", "pods", "Pod"] {
            assert_eq!(resource(k).unwrap().plural, "pods");
        }
        assert_eq!(resource("Deployment").unwrap().api_version, "apps/v1");
        assert_eq!(
            resource("ingress").unwrap().api_version,
            "networking.k8s.io/v1"
        );
        assert!(resource("secrets").unwrap_err().contains("never"));
        assert!(resource("Secret").is_err());
        assert!(resource("nodes").unwrap_err().contains("unknown kind"));
    }
}

//! What Switchyard puts in the cluster for a team, built from its config.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, Secret, SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::K8sError;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_ORG: &str = "switchyard.dev/org";
pub const LABEL_TEAM: &str = "switchyard.dev/team";
pub const LABEL_PIPELINE: &str = "switchyard.dev/pipeline";
/// Hash of the desired spec: drift shows as a different hash (or a spec not matching it).
pub const SPEC_HASH: &str = "switchyard.dev/spec-hash";

/// CronJob names are at most 52 characters (the controller appends 11 for its Jobs).
pub const CRONJOB_NAME_MAX: usize = 52;

/// The image pipeline jobs run when the config names none.
pub const DEFAULT_IMAGE: &str = "ghcr.io/switchyard/pipeline:latest";

fn short_hash(s: &str, n: usize) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))[..n].to_owned()
}

/// A DNS-1123 label fragment: lowercase alphanumerics and `-`.
fn dns(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    mapped.trim_matches('-').to_owned()
}

/// A valid label value (63 characters at most).
pub fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// `sy-{pipeline}-{org}-{team}`, shortened to fit, always ending with a hash of the exact
/// (pipeline, org, team): two teams never collide, even when their names differ only in a
/// character that `-` replaces (`team_a` and `team-a`) or in what truncation cut off.
pub fn cronjob_name(org: &str, team: &str, pipeline: &str) -> String {
    let hash = short_hash(&format!("{org}\0{team}\0{pipeline}"), 8);
    let base = format!("sy-{}-{}-{}", dns(pipeline), dns(org), dns(team));
    let room = CRONJOB_NAME_MAX - hash.len() - 1;
    let base: String = base.chars().take(room).collect();
    format!("{}-{hash}", base.trim_end_matches('-'))
}

/// The Secret holding a team's token and the config-service URL.
pub fn secret_name(org: &str, team: &str) -> String {
    let hash = short_hash(&format!("{org}\0{team}"), 8);
    let base: String = format!("sy-{}-{}", dns(org), dns(team))
        .chars()
        .take(CRONJOB_NAME_MAX - 9)
        .collect();
    format!("{}-{hash}", base.trim_end_matches('-'))
}

fn labels(
    org: &str,
    team: &str,
    component: &str,
    pipeline: Option<&str>,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (MANAGED_BY.to_owned(), super::FIELD_MANAGER.to_owned()),
        (PART_OF.to_owned(), "switchyard".to_owned()),
        (COMPONENT.to_owned(), component.to_owned()),
        (LABEL_ORG.to_owned(), label_value(org)),
        (LABEL_TEAM.to_owned(), label_value(team)),
    ]);
    if let Some(p) = pipeline {
        l.insert(LABEL_PIPELINE.to_owned(), label_value(p));
    }
    l
}

pub fn team_secret(org: &str, team: &str, token: &str, config_service_url: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(org, team)),
            labels: Some(labels(org, team, "team-credentials", None)),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([
            ("SWITCHYARD_TOKEN".to_owned(), token.to_owned()),
            (
                "SWITCHYARD_CONFIG_SERVICE_URL".to_owned(),
                config_service_url.to_owned(),
            ),
        ])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// One pipeline of a team's `pipelines` config.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub schedule: String,
    pub time_zone: Option<String>,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub suspend: bool,
    pub backoff_limit: i32,
    pub active_deadline_seconds: Option<i64>,
    pub resources: Option<Value>,
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v?.as_array().map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

/// The pipelines of an effective config (`pipelines.<name>`), validated: a bad schedule is refused
/// before anything is applied.
pub fn pipelines_of(config: &Value) -> Result<Vec<Pipeline>, K8sError> {
    let Some(map) = config.get("pipelines").and_then(Value::as_object) else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for (name, p) in map {
        if p.is_null() {
            continue;
        }
        let schedule = p
            .get("schedule")
            .and_then(Value::as_str)
            .ok_or_else(|| K8sError::Invalid(format!("pipeline {name} has no schedule")))?;
        crate::k8s::validate_schedule(schedule)
            .map_err(|e| K8sError::Invalid(format!("pipeline {name}: {e}")))?;
        out.push(Pipeline {
            name: name.clone(),
            schedule: schedule.to_owned(),
            time_zone: p
                .get("time_zone")
                .and_then(Value::as_str)
                .map(str::to_owned),
            image: p
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_IMAGE)
                .to_owned(),
            command: strings(p.get("command")),
            args: strings(p.get("args")),
            env: p
                .get("env")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default(),
            suspend: p.get("enabled").and_then(Value::as_bool) == Some(false),
            backoff_limit: p.get("backoff_limit").and_then(Value::as_i64).unwrap_or(2) as i32,
            active_deadline_seconds: p.get("active_deadline_seconds").and_then(Value::as_i64),
            resources: p.get("resources").cloned(),
        });
    }
    Ok(out)
}

fn requirements(v: &Option<Value>) -> ResourceRequirements {
    let q = |m: Option<&Value>, default: &[(&str, &str)]| -> Option<BTreeMap<String, Quantity>> {
        let mut out: BTreeMap<String, Quantity> = default
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect();
        if let Some(obj) = m.and_then(Value::as_object) {
            for (k, v) in obj {
                if let Some(s) = v.as_str() {
                    out.insert(k.clone(), Quantity(s.to_owned()));
                }
            }
        }
        Some(out)
    };
    ResourceRequirements {
        requests: q(
            v.as_ref().and_then(|r| r.get("requests")),
            &[("cpu", "100m"), ("memory", "128Mi")],
        ),
        limits: q(
            v.as_ref().and_then(|r| r.get("limits")),
            &[("memory", "512Mi")],
        ),
        ..Default::default()
    }
}

/// The desired CronJob of one pipeline, annotated with the hash of its spec.
pub fn cronjob(org: &str, team: &str, p: &Pipeline) -> CronJob {
    let secret = secret_name(org, team);
    let mut env: Vec<EnvVar> = ["SWITCHYARD_TOKEN", "SWITCHYARD_CONFIG_SERVICE_URL"]
        .iter()
        .map(|k| EnvVar {
            name: (*k).to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: (*k).to_owned(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    env.extend([
        EnvVar {
            name: "SWITCHYARD_ORG".into(),
            value: Some(org.to_owned()),
            ..Default::default()
        },
        EnvVar {
            name: "SWITCHYARD_TEAM".into(),
            value: Some(team.to_owned()),
            ..Default::default()
        },
        EnvVar {
            name: "SWITCHYARD_PIPELINE".into(),
            value: Some(p.name.clone()),
            ..Default::default()
        },
    ]);
    env.extend(p.env.iter().map(|(k, v)| EnvVar {
        name: k.clone(),
        value: Some(v.clone()),
        ..Default::default()
    }));
    let pod_labels = labels(org, team, "pipeline-job", Some(&p.name));
    let spec = CronJobSpec {
        schedule: p.schedule.clone(),
        time_zone: p.time_zone.clone(),
        suspend: Some(p.suspend),
        concurrency_policy: Some("Forbid".into()),
        successful_jobs_history_limit: Some(3),
        failed_jobs_history_limit: Some(3),
        starting_deadline_seconds: Some(300),
        job_template: JobTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(pod_labels.clone()),
                ..Default::default()
            }),
            spec: Some(JobSpec {
                backoff_limit: Some(p.backoff_limit),
                ttl_seconds_after_finished: Some(86_400),
                active_deadline_seconds: p.active_deadline_seconds,
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        automount_service_account_token: Some(false),
                        security_context: Some(PodSecurityContext {
                            run_as_non_root: Some(true),
                            seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
                                type_: "RuntimeDefault".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        containers: vec![Container {
                            name: "pipeline".into(),
                            image: Some(p.image.clone()),
                            command: p.command.clone(),
                            args: p.args.clone(),
                            env: Some(env),
                            resources: Some(requirements(&p.resources)),
                            security_context: Some(SecurityContext {
                                allow_privilege_escalation: Some(false),
                                read_only_root_filesystem: Some(true),
                                capabilities: Some(Capabilities {
                                    drop: Some(vec!["ALL".into()]),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
        },
    };
    let hash = spec_hash(&spec);
    CronJob {
        metadata: ObjectMeta {
            name: Some(cronjob_name(org, team, &p.name)),
            labels: Some(labels(org, team, "pipeline", Some(&p.name))),
            annotations: Some(BTreeMap::from([(SPEC_HASH.to_owned(), hash)])),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    }
}

pub fn spec_hash(spec: &CronJobSpec) -> String {
    short_hash(&serde_json::to_string(spec).unwrap_or_default(), 16)
}

/// Whether an actual CronJob still matches what Switchyard applied: its annotation names the
/// desired hash and its spec hashes to it (an out-of-band edit changes the spec, not the
/// annotation).
pub fn in_sync(actual: &CronJob, desired: &CronJob) -> bool {
    let want = desired
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SPEC_HASH));
    let have = actual
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SPEC_HASH));
    want.is_some() && want == have && actual.spec.as_ref().map(spec_hash).as_ref() == want
}

/// A Job from the CronJob's template, owned by the CronJob (deleted with it).
pub fn job_from_cronjob(cj: &CronJob) -> Job {
    let name = cj.metadata.name.clone().unwrap_or_default();
    let tmpl = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let suffix = short_hash(&format!("{name}{}", switchyard_common::ids::new_id()), 6);
    let mut labels = tmpl
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert("switchyard.dev/manual".into(), "true".into());
    Job {
        metadata: ObjectMeta {
            name: Some(format!("{name}-manual-{suffix}")),
            labels: Some(labels),
            owner_references: cj.metadata.uid.as_ref().map(|uid| {
                vec![OwnerReference {
                    api_version: "batch/v1".into(),
                    kind: "CronJob".into(),
                    name: name.clone(),
                    uid: uid.clone(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: tmpl.spec,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_fit_and_never_collide() {
        let a = cronjob_name("acme", "team_a", "ingestion");
        let b = cronjob_name("acme", "team-a", "ingestion");
        assert_ne!(
            a, b,
            "team_a and team-a map to the same characters but differ in their hash"
        );
        assert!(a.starts_with("sy-ingestion-acme-team-a-"));
        let long = "x".repeat(63);
        let n1 = cronjob_name(&long, &format!("{long}1"), "gap-analysis");
        let n2 = cronjob_name(&long, &format!("{long}2"), "gap-analysis");
        assert!(n1.len() <= CRONJOB_NAME_MAX && n2.len() <= CRONJOB_NAME_MAX);
        assert_ne!(n1, n2, "truncation does not make names collide");
        assert!(
            n1.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert!(secret_name(&long, &long).len() <= CRONJOB_NAME_MAX);
        assert_ne!(secret_name("acme", "team_a"), secret_name("acme", "team-a"));
    }

    #[test]
    fn cronjob_from_config() {
        let config = json!({"pipelines": {"ingestion": {"schedule": "*/5 * * * *", "enabled": false, "env": {"MODE": "full"}, "resources": {"limits": {"cpu": "2"}}}, "gone": null}});
        let p = pipelines_of(&config).unwrap();
        assert_eq!(p.len(), 1);
        let cj = cronjob("acme", "checkout", &p[0]);
        let spec = cj.spec.as_ref().unwrap();
        assert_eq!(
            (spec.suspend, spec.concurrency_policy.as_deref()),
            (Some(true), Some("Forbid"))
        );
        let c = &spec
            .job_template
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["cpu"].0,
            "2"
        );
        assert!(c.env.as_ref().unwrap().iter().any(|e| e.name == "MODE"));
        // The annotation hashes the spec; an edited spec no longer matches it.
        let mut edited = cj.clone();
        assert!(in_sync(&edited, &cj));
        edited.spec.as_mut().unwrap().schedule = "0 * * * *".into();
        assert!(!in_sync(&edited, &cj));
        assert!(pipelines_of(&json!({"pipelines": {"x": {"schedule": "whenever"}}})).is_err());
        assert!(pipelines_of(&json!({"pipelines": {"x": {}}})).is_err());
    }
}

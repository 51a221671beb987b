//! Per-team Kubernetes resources: the team's pipeline CronJobs and the Secret holding its token.
//!
//! Everything goes through one [`kube::Client`]. In production it is built from the kubeconfig or
//! the in-cluster service account; in tests it is the same client over the stateful in-process fake
//! API server in `switchyard_common::k8s_fake`, so the request path is identical.

#[cfg(feature = "testing")]
pub use switchyard_common::k8s_fake as fake;
pub mod resources;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

pub use resources::*;
pub use switchyard_common::cron::validate_cron as validate_schedule;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "switchyard";

/// Why a Kubernetes call failed, with a label for metrics (kube-rs controller style).
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("invalid pipeline: {0}")]
    Invalid(String),
}

impl K8sError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            K8sError::Api(kube::Error::Api(s)) if s.code == 404 => "not_found",
            K8sError::Api(kube::Error::Api(s)) if s.code == 409 => "conflict",
            K8sError::Api(kube::Error::Api(s)) if s.code == 422 => "invalid",
            K8sError::Api(kube::Error::Api(_)) => "api",
            K8sError::Api(_) => "transport",
            K8sError::Invalid(_) => "invalid_pipeline",
        }
    }
}

/// The tenant namespace and a client for it.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.namespace)
            .finish()
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Cluster {
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
        }
    }

    fn cronjobs(&self) -> Api<CronJob> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Server-side apply: creates or updates, owned by the `switchyard` field manager.
    pub async fn apply_cronjob(&self, cj: &CronJob) -> Result<CronJob, K8sError> {
        let name = cj.metadata.name.clone().unwrap_or_default();
        Ok(self
            .cronjobs()
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(cj),
            )
            .await?)
    }

    pub async fn apply_secret(&self, s: &Secret) -> Result<Secret, K8sError> {
        let name = s.metadata.name.clone().unwrap_or_default();
        Ok(self
            .secrets()
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(s),
            )
            .await?)
    }

    pub async fn get_cronjob(&self, name: &str) -> Result<Option<CronJob>, K8sError> {
        Ok(self.cronjobs().get_opt(name).await?)
    }

    /// Deletes with background propagation; already gone is success (idempotent).
    pub async fn delete_cronjob(&self, name: &str) -> Result<(), K8sError> {
        match self
            .cronjobs()
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_secret(&self, name: &str) -> Result<(), K8sError> {
        match self
            .secrets()
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_secret(&self, name: &str) -> Result<Option<Secret>, K8sError> {
        Ok(self.secrets().get_opt(name).await?)
    }

    /// Every CronJob Switchyard manages, or only one team's.
    pub async fn managed_cronjobs(
        &self,
        team: Option<(&str, &str)>,
    ) -> Result<Vec<CronJob>, K8sError> {
        let mut selector = format!("{MANAGED_BY}={FIELD_MANAGER}");
        if let Some((org, team)) = team {
            selector.push_str(&format!(
                ",{LABEL_ORG}={},{LABEL_TEAM}={}",
                label_value(org),
                label_value(team)
            ));
        }
        Ok(self
            .cronjobs()
            .list(&ListParams::default().labels(&selector))
            .await?
            .items)
    }

    /// Starts a Job now from a CronJob's template (what `kubectl create job --from=cronjob/...` does).
    pub async fn run_now(&self, cronjob: &str) -> Result<Job, K8sError> {
        let cj = self
            .get_cronjob(cronjob)
            .await?
            .ok_or_else(|| K8sError::Invalid(format!("CronJob {cronjob} does not exist")))?;
        let job = job_from_cronjob(&cj);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(jobs.create(&PostParams::default(), &job).await?)
    }
}

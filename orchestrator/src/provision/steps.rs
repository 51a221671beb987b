//! The steps of onboarding and offboarding a team, and the compensation of each.

use serde_json::{Value, json};
use switchyard_common::clients::{CallError, Created, Deleted, IssuedToken, LayerWrite};

use super::{NO_CLUSTER, Provisioner};
use crate::k8s;
use crate::store::RunOutcome;

impl Provisioner {
    pub(super) async fn provision(
        &self,
        run: &str,
        org: &str,
        team: &str,
        req: &Value,
        token: &str,
    ) -> std::result::Result<(), (RunOutcome, String)> {
        enum Done {
            Node,
            Layer,
            Token(String),
            Secret(String),
            CronJobs(Vec<String>),
        }
        let mut seq = 0;
        let mut done: Vec<Done> = Vec::new();
        let call = |e: CallError| e.to_string();
        let cluster = self.cluster.clone();
        let result: std::result::Result<(), String> = async {
            let body = json!({"id": team, "parent_id": req.get("parent_id"), "kind": "team", "name": req.get("name")});
            self.step(run, &mut seq, "create_node", || async {
                match self.config.create_node(token, org, &body).await.map_err(call)? {
                    Created::Created => Ok(format!("node {team} created")),
                    Created::Exists(detail) => Err(format!("the node exists already: {detail}")),
                }
            })
            .await?;
            done.push(Done::Node);
            let layer = req.get("config").cloned().filter(|c| !c.is_null()).unwrap_or_else(|| json!({}));
            self.step(run, &mut seq, "write_config", || async {
                match self.config.put_layer(token, org, team, &layer, "\"v0\"").await.map_err(call)? {
                    LayerWrite::Written => Ok("layer version 1 written".to_owned()),
                    LayerWrite::AwaitingApproval { change } => Err(format!("the config touches protected paths and awaits approval (change {change})")),
                }
            })
            .await?;
            done.push(Done::Layer);
            let mut issued: Option<IssuedToken> = None;
            self.step(run, &mut seq, "issue_token", || async {
                let t = self.config.issue_team_token(token, org, team, "pipelines").await.map_err(call)?;
                let detail = format!("team token {} issued", t.id);
                issued = Some(t);
                Ok(detail)
            })
            .await?;
            let IssuedToken { id: token_id, secret: team_token } = issued.expect("set by the step");
            done.push(Done::Token(token_id));
            let secret_name = k8s::secret_name(org, team);
            self.step(run, &mut seq, "store_secret", || async {
                let Some(c) = &cluster else { return Ok(NO_CLUSTER.to_owned()) };
                c.apply_secret(&k8s::team_secret(org, team, &team_token, &self.pod_config_service_url)).await.map_err(|e| e.to_string())?;
                Ok(format!("Secret {secret_name} applied"))
            })
            .await?;
            if cluster.is_some() {
                done.push(Done::Secret(secret_name.clone()));
            }
            let mut applied: Vec<String> = Vec::new();
            let r = self
                .step(run, &mut seq, "apply_cronjobs", || async {
                    let Some(c) = &cluster else { return Ok(NO_CLUSTER.to_owned()) };
                    let config = self.config.node_config(org, team).await.map_err(call)?;
                    // Every schedule is validated before anything is applied.
                    let desired: Vec<_> = k8s::pipelines_of(&config).map_err(|e| e.to_string())?.iter().map(|p| k8s::cronjob(org, team, p)).collect();
                    for cj in &desired {
                        c.apply_cronjob(cj).await.map_err(|e| e.to_string())?;
                        applied.push(cj.metadata.name.clone().unwrap_or_default());
                    }
                    Ok(format!("{} CronJobs applied: {}", applied.len(), applied.join(", ")))
                })
                .await;
            if !applied.is_empty() {
                done.push(Done::CronJobs(applied));
            }
            r.map(|_| ())
        }
        .await;
        let Err(cause) = result else { return Ok(()) };
        // Compensate in reverse.
        let mut undo_failed = Vec::new();
        while let Some(d) = done.pop() {
            let r = match d {
                Done::CronJobs(names) => {
                    self.step(run, &mut seq, "compensate:apply_cronjobs", || async {
                        let c = cluster.as_ref().expect("cronjobs imply a cluster");
                        for n in &names {
                            c.delete_cronjob(n).await.map_err(|e| e.to_string())?;
                        }
                        Ok(format!("deleted {}", names.join(", ")))
                    })
                    .await
                }
                Done::Secret(name) => {
                    self.step(run, &mut seq, "compensate:store_secret", || async {
                        cluster
                            .as_ref()
                            .expect("a secret implies a cluster")
                            .delete_secret(&name)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(format!("deleted Secret {name}"))
                    })
                    .await
                }
                Done::Token(id) => {
                    self.step(run, &mut seq, "compensate:issue_token", || async {
                        self.config
                            .revoke_team_token(token, org, team, &id)
                            .await
                            .map_err(call)?;
                        Ok(format!("revoked token {id}"))
                    })
                    .await
                }
                Done::Layer => {
                    self.step(run, &mut seq, "compensate:write_config", || async {
                        match self
                            .config
                            .put_layer(token, org, team, &json!({}), "\"v1\"")
                            .await
                            .map_err(call)?
                        {
                            LayerWrite::Written => {
                                Ok("layer cleared (routing released)".to_owned())
                            }
                            LayerWrite::AwaitingApproval { change } => Err(format!(
                                "clearing the layer awaits approval (change {change})"
                            )),
                        }
                    })
                    .await
                }
                Done::Node => {
                    self.step(run, &mut seq, "compensate:create_node", || async {
                        match self
                            .config
                            .delete_node(token, org, team)
                            .await
                            .map_err(call)?
                        {
                            Deleted::Deleted | Deleted::AlreadyGone => {
                                Ok(format!("node {team} deleted"))
                            }
                            Deleted::HasChildren(detail) => Err(detail),
                        }
                    })
                    .await
                }
            };
            if let Err(e) = r {
                undo_failed.push(e);
            }
        }
        if undo_failed.is_empty() {
            Err((RunOutcome::RolledBack, cause))
        } else {
            Err((
                RunOutcome::Failed,
                format!("{cause}; and could not undo: {}", undo_failed.join("; ")),
            ))
        }
    }

    pub(super) async fn deprovision(
        &self,
        run: &str,
        org: &str,
        team: &str,
        token: &str,
    ) -> std::result::Result<(), (RunOutcome, String)> {
        let mut seq = 0;
        let cluster = self.cluster.clone();
        let r: std::result::Result<(), String> = async {
            self.step(run, &mut seq, "delete_cronjobs", || async {
                let Some(c) = &cluster else {
                    return Ok(NO_CLUSTER.to_owned());
                };
                let existing = c
                    .managed_cronjobs(Some((org, team)))
                    .await
                    .map_err(|e| e.to_string())?;
                let names: Vec<String> = existing
                    .iter()
                    .filter_map(|cj| cj.metadata.name.clone())
                    .collect();
                for n in &names {
                    c.delete_cronjob(n).await.map_err(|e| e.to_string())?;
                }
                Ok(if names.is_empty() {
                    "no CronJobs left".to_owned()
                } else {
                    format!("deleted {}", names.join(", "))
                })
            })
            .await?;
            self.step(run, &mut seq, "delete_secret", || async {
                let Some(c) = &cluster else {
                    return Ok(NO_CLUSTER.to_owned());
                };
                c.delete_secret(&k8s::secret_name(org, team))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok("Secret deleted (or already gone)".to_owned())
            })
            .await?;
            self.step(run, &mut seq, "delete_node", || async {
                match self
                    .config
                    .delete_node(token, org, team)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Deleted::Deleted => Ok(format!(
                        "node {team} deleted: its tokens are revoked and its routing removed"
                    )),
                    Deleted::AlreadyGone => Ok(format!("node {team} already gone")),
                    Deleted::HasChildren(_) => Err(format!(
                        "node {team} has children; move or delete them first"
                    )),
                }
            })
            .await?;
            Ok(())
        }
        .await;
        r.map_err(|e| (RunOutcome::Failed, e))
    }
}

//! Config-service calls made on behalf of a user: the caller's own token is forwarded, so the
//! config-service applies its permissions and its audit log names the user. Each answers the
//! outcomes its caller acts on, typed; anything else is a [`CallError`].

use serde_json::{Value, json};

use super::config::ConfigClient;
use super::{CallError, classify, detail, send, transport};

/// Creating a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created,
    /// A node with this id exists already (409), with the config-service's detail.
    Exists(String),
}

/// Deleting a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted, with its layers, routing and tokens.
    Deleted,
    AlreadyGone,
    /// It has children (409): move or delete them first.
    HasChildren(String),
}

/// Writing a config layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerWrite {
    Written,
    /// The layer touches protected paths: a pending change awaits a second admin.
    AwaitingApproval {
        change: String,
    },
}

/// A team token, as issued (the secret is shown this once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub id: String,
    pub secret: String,
}

impl ConfigClient {
    async fn as_user(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<reqwest::Response, CallError> {
        let mut req = self
            .call(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        send(&self.calls, "config-service", req).await
    }

    /// Creates a node (`body` as `POST /api/v1/orgs/{org}/nodes` takes it).
    pub async fn create_node(
        &self,
        token: &str,
        org: &str,
        body: &Value,
    ) -> Result<Created, CallError> {
        let path = format!("/api/v1/orgs/{org}/nodes");
        let resp = self
            .as_user(token, reqwest::Method::POST, &path, Some(body), None)
            .await?;
        if resp.status().as_u16() == 409 {
            return Ok(Created::Exists(detail(resp).await));
        }
        classify(resp).await?;
        Ok(Created::Created)
    }

    /// Deletes a node (its layers, routing and tokens go with it).
    pub async fn delete_node(
        &self,
        token: &str,
        org: &str,
        node: &str,
    ) -> Result<Deleted, CallError> {
        let path = format!("/api/v1/orgs/{org}/nodes/{node}");
        let resp = self
            .as_user(token, reqwest::Method::DELETE, &path, None, None)
            .await?;
        match resp.status().as_u16() {
            404 => Ok(Deleted::AlreadyGone),
            409 => Ok(Deleted::HasChildren(detail(resp).await)),
            _ => {
                classify(resp).await?;
                Ok(Deleted::Deleted)
            }
        }
    }

    /// Writes a node's layer over version `if_match`.
    pub async fn put_layer(
        &self,
        token: &str,
        org: &str,
        node: &str,
        layer: &Value,
        if_match: &str,
    ) -> Result<LayerWrite, CallError> {
        let path = format!("/api/v1/orgs/{org}/nodes/{node}/config/layer");
        let resp = self
            .as_user(
                token,
                reqwest::Method::PUT,
                &path,
                Some(layer),
                Some(if_match),
            )
            .await?;
        if resp.status().as_u16() == 202 {
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let change = v["id"].as_str().unwrap_or("?").to_owned();
            return Ok(LayerWrite::AwaitingApproval { change });
        }
        classify(resp).await?;
        Ok(LayerWrite::Written)
    }

    /// Issues a team token.
    pub async fn issue_team_token(
        &self,
        token: &str,
        org: &str,
        node: &str,
        label: &str,
    ) -> Result<IssuedToken, CallError> {
        let path = format!("/api/v1/orgs/{org}/nodes/{node}/tokens");
        let body = json!({"label": label});
        let resp = self
            .as_user(token, reqwest::Method::POST, &path, Some(&body), None)
            .await?;
        let v: Value = classify(resp).await?.json().await.map_err(transport)?;
        match (v["id"].as_str(), v["secret"].as_str()) {
            (Some(id), Some(secret)) => Ok(IssuedToken {
                id: id.to_owned(),
                secret: secret.to_owned(),
            }),
            _ => Err(CallError::Rejected("no token in the answer".into())),
        }
    }

    /// Revokes a team token; one already gone counts as revoked.
    pub async fn revoke_team_token(
        &self,
        token: &str,
        org: &str,
        node: &str,
        id: &str,
    ) -> Result<(), CallError> {
        let path = format!("/api/v1/orgs/{org}/nodes/{node}/tokens/{id}");
        let resp = self
            .as_user(token, reqwest::Method::DELETE, &path, None, None)
            .await?;
        if resp.status().as_u16() != 404 {
            classify(resp).await?;
        }
        Ok(())
    }
}

//! Helpers for API tests: the real router on a fresh database, called in-process.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard_common::auth::ServiceKey;
use switchyard_common::db::Backend;
use switchyard_common::db::testing::TestDb;
use switchyard_config_service::store::Store;
use switchyard_config_service::{AppState, app};
use tower::ServiceExt;

pub const ADMIN: &str = "test-platform-admin-token-0123456789";

pub struct TestApp {
    pub router: axum::Router,
    pub state: AppState,
    pub service_key: ServiceKey,
    _db: TestDb,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn new(backend: Backend) -> Self {
        switchyard_common::telemetry::init_tracing(false);
        let db = TestDb::new(backend).await.expect("test database");
        let conn = db.connect().await.expect("connect");
        let service_key = ServiceKey::generate();
        let keyring = switchyard_common::crypto::Keyring::parse(
            &switchyard_common::crypto::Keyring::generate_spec("test"),
        )
        .expect("a generated keyring parses");
        let state = AppState::new(
            Store::new(conn),
            Some(ADMIN.into()),
            service_key.clone(),
            keyring,
        );
        Self {
            router: app(state.clone()),
            state,
            service_key,
            _db: db,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(Method::GET, path, token, None, &[]).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.send(Method::POST, path, token, Some(body), &[]).await
    }

    /// A service JWT for the config-service from `service`.
    pub fn service_jwt_of(&self, service: &str) -> String {
        self.service_key.mint(service, "config-service", 60)
    }

    /// A request from a service with a valid JWT.
    pub fn service_jwt(&self) -> String {
        self.service_key.mint("orchestrator", "config-service", 60)
    }

    /// Org, nodes and a layer, asserting each step succeeds.
    pub async fn must(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Value {
        let r = self
            .send(method.clone(), path, Some(ADMIN), body, headers)
            .await;
        assert!(
            r.status.is_success(),
            "{method} {path} answered {}: {}",
            r.status,
            r.body
        );
        r.body
    }

    pub async fn org(&self, id: &str) {
        self.must(
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"id": id, "name": id})),
            &[],
        )
        .await;
    }

    pub async fn node(&self, org: &str, id: &str, parent: Option<&str>, kind: &str) {
        self.must(
            Method::POST,
            &format!("/api/v1/orgs/{org}/nodes"),
            Some(json!({"id": id, "parent_id": parent, "kind": kind, "name": id})),
            &[],
        )
        .await;
    }

    /// Writes a layer over whatever version is current.
    pub async fn layer(&self, org: &str, node: &str, layer: Value) -> Resp {
        let path = format!("/api/v1/orgs/{org}/nodes/{node}/config/layer");
        let current = self.get(&path, Some(ADMIN)).await;
        let etag = current.headers["etag"].to_str().unwrap().to_owned();
        self.send(
            Method::PUT,
            &path,
            Some(ADMIN),
            Some(layer),
            &[("if-match", &etag)],
        )
        .await
    }

    pub async fn token(&self, org: &str, node: Option<&str>, label: &str) -> (String, String) {
        self.token_for(org, node, label, &format!("{label}@{org}.example"))
            .await
    }

    /// A token issued to `subject` (several tokens may share one).
    pub async fn token_for(
        &self,
        org: &str,
        node: Option<&str>,
        label: &str,
        subject: &str,
    ) -> (String, String) {
        let path = match node {
            Some(n) => format!("/api/v1/orgs/{org}/nodes/{n}/tokens"),
            None => format!("/api/v1/orgs/{org}/admin-tokens"),
        };
        let b = self
            .must(
                Method::POST,
                &path,
                Some(json!({"label": label, "subject": subject})),
                &[],
            )
            .await;
        (
            b["secret"].as_str().unwrap().to_owned(),
            b["id"].as_str().unwrap().to_owned(),
        )
    }
}

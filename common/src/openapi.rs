//! The last step of every service's OpenAPI document: what the handlers' annotations leave out,
//! added the same way everywhere, so that each operation documents every status it can answer.
//!
//! - Security: public operations (probes, metrics) say `security: []`; internal ones
//!   (`/api/v1/internal/...`, the runner's `POST /api/v1/run`) the service JWT; the rest the bearer
//!   token.
//! - Errors, each `application/problem+json` with the `Problem` schema: 401 and 403 on secured
//!   operations, 404 where the path names something, 400 (not JSON, a bad query) and 422 (valid
//!   JSON that breaks the schema) where there is input, 413 where there is a body, 503 (the
//!   database or a callee is down) everywhere but the probes.
//! - Error responses the annotations declared as `application/json` are `application/problem+json`,
//!   which is what the services send.

use serde_json::{Value, json};

/// How a service's document is finished.
pub struct Contract {
    /// Paths of operations that need the service JWT, beside those under `/api/v1/internal/`.
    pub service_paths: &'static [&'static str],
}

const PUBLIC: &[&str] = &["/healthz", "/readyz", "/metrics"];

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// The finished document, pretty-printed with a final newline (as committed under `openapi/`).
pub fn finish(doc: &utoipa::openapi::OpenApi, contract: &Contract) -> String {
    let mut v = serde_json::to_value(doc).expect("the OpenAPI document serialises");
    let schemes = v
        .pointer_mut("/components")
        .and_then(Value::as_object_mut)
        .expect("components")
        .entry("securitySchemes")
        .or_insert_with(|| json!({}));
    let schemes = schemes.as_object_mut().expect("an object");
    schemes.entry("bearer").or_insert_with(|| {
        json!({"type": "http", "scheme": "bearer",
               "description": "Platform admin, org admin or team token"})
    });
    schemes.entry("service_jwt").or_insert_with(|| {
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "EdDSA service JWT signed by the calling service (kid = sub), aud = this service, at most 5 minutes"})
    });
    v["security"] = json!([{"bearer": []}]);
    let paths = v["paths"].as_object_mut().expect("paths");
    for (path, ops) in paths.iter_mut() {
        for (method, op) in ops.as_object_mut().expect("operations") {
            if !matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                continue;
            }
            finish_operation(path, op, contract);
        }
    }
    let mut s = serde_json::to_string_pretty(&v).expect("serialises");
    s.push('\n');
    s
}

fn finish_operation(path: &str, op: &mut Value, contract: &Contract) {
    let public = PUBLIC.contains(&path);
    let internal = path.starts_with("/api/v1/internal/") || contract.service_paths.contains(&path);
    op["security"] = if public {
        json!([])
    } else if internal {
        json!([{"service_jwt": []}])
    } else {
        json!([{"bearer": []}])
    };
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    let has_path_params = params.iter().any(|p| p["in"] == "path");
    let has_query = params.iter().any(|p| p["in"] == "query");
    let has_body = op.get("requestBody").is_some();
    let responses = op["responses"].as_object_mut().expect("responses");
    // Declared errors: the content type the services send.
    for (code, r) in responses.iter_mut() {
        if (code.starts_with('4') || code.starts_with('5'))
            && let Some(content) = r.get_mut("content").and_then(Value::as_object_mut)
            && let Some(json) = content.remove("application/json")
        {
            content.insert("application/problem+json".into(), json);
        }
    }
    if public {
        return;
    }
    let mut add = |code: &str, why: &str| {
        responses
            .entry(code.to_owned())
            .or_insert_with(|| problem(why));
    };
    add("401", "No credentials, or credentials that are not valid");
    add("403", "The credentials may not do this");
    if has_path_params {
        add("404", "Not found, or not visible to these credentials");
    }
    if has_body || has_query || has_path_params {
        add(
            "400",
            "The request cannot be read (a body that is not JSON, a malformed query)",
        );
        add(
            "422",
            "The request is well formed but breaks the schema or a rule",
        );
    }
    if has_body {
        add("413", "The body is larger than the limit");
        add("415", "The body is not `application/json`");
    }
    add(
        "503",
        "The database or a service this one needs is unavailable; retry later",
    );
}

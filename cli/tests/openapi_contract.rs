//! The committed OpenAPI documents say where each parameter goes: every `{name}` of a path has a
//! path parameter, every path parameter is in its path, and query parameters are optional unless
//! the handler needs them. (utoipa puts `IntoParams` structs in the path unless told otherwise:
//! a client generated from such a document could not call the list endpoints at all.)

use serde_json::Value;

fn spec(name: &str) -> Value {
    let path = format!("{}/../openapi/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("the committed document"))
        .expect("valid JSON")
}

#[test]
fn parameters_are_where_the_paths_say() {
    let mut problems = Vec::new();
    for name in [
        "config-service.json",
        "orchestrator.json",
        "agent-runner.json",
    ] {
        let doc = spec(name);
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            let templated: Vec<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in ops.as_object().expect("operations") {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let in_path: Vec<&str> = params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                for p in &in_path {
                    if !templated.contains(p) {
                        problems.push(format!(
                            "{name} {method} {path}: path parameter {p} is not in the path"
                        ));
                    }
                }
                for t in &templated {
                    if !in_path.contains(t) {
                        problems.push(format!(
                            "{name} {method} {path}: {{{t}}} has no path parameter"
                        ));
                    }
                }
                if op["responses"].as_object().is_none_or(|r| r.is_empty()) {
                    problems.push(format!("{name} {method} {path}: no responses"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn provisioning_is_documented() {
    let doc = spec("orchestrator.json");
    for path in [
        "/api/v1/orgs/{org}/provisioning",
        "/api/v1/orgs/{org}/provisioning/{run_id}",
        "/api/v1/orgs/{org}/teams/{team}/deprovision",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
}

//! The committed OpenAPI document must match the code.

#[test]
fn committed_openapi_is_current() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../openapi/config-service.json"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = switchyard_config_service::openapi::json();
    assert!(
        committed == generated,
        "openapi/config-service.json is stale: run `cargo run -p switchyard-cli -- gen-openapi` and commit the result"
    );
}

#[test]
fn openapi_documents_every_public_endpoint() {
    let doc: serde_json::Value =
        serde_json::from_str(&switchyard_config_service::openapi::json()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/orgs",
        "/api/v1/orgs/{org}/nodes/{node}/config/layer",
        "/api/v1/internal/routing/lookup",
        "/api/v1/orgs/{org}/audit",
        "/api/v1/orgs/{org}/changes/{id}/approve",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} is missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["service_jwt"].is_object());
}

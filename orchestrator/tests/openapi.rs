//! The committed OpenAPI document must match the code.

#[test]
fn committed_openapi_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/orchestrator.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == switchyard_orchestrator::openapi::json(),
        "openapi/orchestrator.json is stale: run `cargo run -p switchyard-cli -- gen-openapi` and commit the result"
    );
}

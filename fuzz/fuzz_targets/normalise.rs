//! Every normaliser on arbitrary (verified) deliveries: never a panic, and the identifiers it
//! hands the routing lookup are always ones the lookup accepts.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchyard_common::routing::{MAX_IDENTIFIERS, RouteKind, normalise_route_value};
use switchyard_orchestrator::sources::{Delivery, Outcome};

fuzz_target!(|req: common::Request| {
    // Slack's endpoints (the others ignore it).
    let endpoint = ["events", "commands", "interactions"][req.body.len() % 3];
    let headers = req.header_map();
    let settings = serde_json::json!({"timestamp_tolerance_seconds": i64::MAX});
    let delivery = Delivery {
        endpoint,
        settings: &settings,
        ..Delivery::new(&headers, &req.body)
    };
    let Ok(Outcome::Event(env)) = req.source().normalise(&delivery) else {
        return;
    };
    assert!(env.identifiers.len() <= MAX_IDENTIFIERS);
    for (k, v) in &env.identifiers {
        let kind = RouteKind::parse(k).expect("a known kind");
        assert_eq!(normalise_route_value(kind, v).as_deref(), Ok(v.as_str()));
    }
    assert!(!env.delivery_id.is_empty());
});

//! Every normaliser on arbitrary (verified) deliveries: never a panic, and the identifiers it
//! hands the routing lookup are always ones the lookup accepts.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchyard_common::routing::{MAX_IDENTIFIERS, RouteKind, normalise_route_value};
use switchyard_orchestrator::sources::SlackKind;
use switchyard_orchestrator::sources::normalise::{Outcome, normalise};

fuzz_target!(|req: common::Request| {
    let slack = [
        SlackKind::Events,
        SlackKind::Commands,
        SlackKind::Interactions,
    ][req.body.len() % 3];
    let Ok(Outcome::Event(env)) =
        normalise(req.source(), Some(slack), &req.header_map(), &req.body)
    else {
        return;
    };
    assert!(env.identifiers.len() <= MAX_IDENTIFIERS);
    for (k, v) in &env.identifiers {
        let kind = RouteKind::parse(k).expect("a known kind");
        assert_eq!(normalise_route_value(kind, v).as_deref(), Ok(v.as_str()));
    }
    assert!(!env.delivery_id.is_empty());
});

//! Domain rules, free of storage and HTTP: how layers merge and validate, what a routing
//! identifier is, which agent-run transitions are allowed.

pub mod config;
pub mod routing;
pub mod runs;
pub mod secrets;

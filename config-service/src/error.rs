//! The config-service uses the services' shared error type.

pub use switchyard_common::error::{Error, Result, on_unique};

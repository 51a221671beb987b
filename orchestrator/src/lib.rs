//! Switchyard's orchestrator: the front door for every incident signal, and the control plane.

pub mod sources;

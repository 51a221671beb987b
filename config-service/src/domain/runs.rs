//! Agent-run statuses and the transitions between them.

pub const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

/// Whether a run may move from `from` to `to`. Finished runs never change again.
pub fn transition_allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("queued", "running")
            | ("queued", "failed")
            | ("queued", "cancelled")
            | ("running", "succeeded")
            | ("running", "failed")
            | ("running", "cancelled")
    )
}

pub fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_transitions() {
        assert!(transition_allowed("queued", "running"));
        assert!(transition_allowed("running", "succeeded"));
        assert!(!transition_allowed("succeeded", "running"));
        assert!(!transition_allowed("queued", "succeeded"));
        assert!(!transition_allowed("running", "queued"));
        for s in STATUSES {
            if is_terminal(s) {
                assert!(STATUSES.iter().all(|t| !transition_allowed(s, t)));
            }
        }
    }
}

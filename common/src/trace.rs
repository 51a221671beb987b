//! W3C Trace Context (`traceparent`) across the services; the spans are exported by
//! [`crate::otel`] when OpenTelemetry export is on.
//!
//! Each request runs inside a [`TraceContext`]: the caller's trace (from its `traceparent`) or a
//! new one, with a span id of its own. The trace id is recorded on the request's `tracing` span, so
//! the logs of all three services for one webhook share it, and every outbound call made while
//! handling the request carries a child `traceparent`. Work that outlives the request (the
//! orchestrator's dispatch, the agent-runner's run) keeps the context explicitly.

use rand::RngCore;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A position in a distributed trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, never all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits: this service's span.
    pub span_id: String,
    /// Whether the caller sampled the trace (flag 01).
    pub sampled: bool,
}

/// Trace and span ids come from the thread's generator (a CSPRNG the OS seeds), not from the OS
/// per id: two or three ids a request made a `getrandom` system call each, 3% of the webhook
/// path's CPU. They name spans; nothing secret rests on them.
fn random_hex(bytes: usize) -> String {
    let mut b = [0u8; 16];
    // Trace ids are 16 bytes and span ids 8: more panics here.
    let b = &mut b[..bytes];
    loop {
        rand::thread_rng().fill_bytes(b);
        if b.iter().any(|x| *x != 0) {
            return hex::encode(b);
        }
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        && s.bytes().any(|c| c != b'0')
}

impl TraceContext {
    /// A new trace.
    pub fn new_root() -> Self {
        Self {
            trace_id: random_hex(16),
            span_id: random_hex(8),
            sampled: true,
        }
    }

    /// Parses a `traceparent` header (version 00); `None` if it is not a valid one.
    pub fn parse(header: &str) -> Option<Self> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        let known_version =
            |v: &str| v == "00" || (v != "ff" && v.len() == 2 && u8::from_str_radix(v, 16).is_ok());
        match parts.as_slice() {
            [version, trace, parent, flags] if known_version(version) => {
                if !is_hex(trace, 32) || !is_hex(parent, 16) || flags.len() != 2 {
                    return None;
                }
                let flags = u8::from_str_radix(flags, 16).ok()?;
                Some(Self {
                    trace_id: (*trace).to_owned(),
                    span_id: (*parent).to_owned(),
                    sampled: flags & 1 == 1,
                })
            }
            _ => None,
        }
    }

    /// The same trace, with a new span (this service's, or an outbound call's).
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(8),
            sampled: self.sampled,
        }
    }

    /// The `traceparent` header value naming this span as the parent.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }

    /// The context of the request (or work) being handled, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The `traceparent` to send on an outbound call: a child of the current context, or a new
    /// root when there is none.
    pub fn outbound() -> String {
        Self::current()
            .map(|c| c.child())
            .unwrap_or_else(Self::new_root)
            .header()
    }

    /// Runs `fut` inside this context.
    pub async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_continues_a_trace() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(h).unwrap();
        assert_eq!(
            (c.trace_id.as_str(), c.span_id.as_str(), c.sampled),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true)
        );
        let child = c.child();
        assert_eq!(child.trace_id, c.trace_id);
        assert_ne!(child.span_id, c.span_id);
        assert_eq!(TraceContext::parse(&child.header()).unwrap(), child);
    }

    #[test]
    fn refuses_invalid_headers() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn outbound_calls_are_children_of_the_current_context() {
        let root = TraceContext::new_root();
        let out = root.clone().scope(async { TraceContext::outbound() }).await;
        let parsed = TraceContext::parse(&out).unwrap();
        assert_eq!(parsed.trace_id, root.trace_id);
        assert_ne!(parsed.span_id, root.span_id);
        // Outside any context, a new trace starts.
        assert_ne!(
            TraceContext::parse(&TraceContext::outbound())
                .unwrap()
                .trace_id,
            root.trace_id
        );
    }
}

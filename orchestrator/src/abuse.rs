//! Per-address limits on requests that prove nothing: failed verifications and probes of unknown
//! integrations.
//!
//! A fixed one-minute window per client address. Unlike a token bucket it can be *peeked*, so an
//! address already over its limit is refused before its body is read or any MAC computed; and its
//! map is pruned, so a spray of spoofed or rotating addresses cannot grow it without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Entries kept before a prune drops those of past windows.
const PRUNE_ABOVE: usize = 4096;

#[derive(Debug)]
pub struct FailureLimiter {
    per_minute: u32,
    start: Instant,
    /// Address → (window number, failures in it).
    windows: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl FailureLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            start: Instant::now(),
            windows: Mutex::default(),
        }
    }

    fn window(&self) -> u64 {
        (self.start.elapsed().as_secs()) / WINDOW.as_secs()
    }

    /// True when the address already used up this minute's failures: refuse it before doing any
    /// work for it.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let now = self.window();
        self.windows
            .lock()
            .expect("poisoned")
            .get(&ip)
            .is_some_and(|(w, n)| *w == now && *n > self.per_minute)
    }

    /// Counts a failure; true when it is over the limit (answer 429 rather than 401/404).
    pub fn record(&self, ip: IpAddr) -> bool {
        let now = self.window();
        let mut m = self.windows.lock().expect("poisoned");
        if m.len() >= PRUNE_ABOVE && !m.contains_key(&ip) {
            m.retain(|_, (w, _)| *w == now);
        }
        let e = m.entry(ip).or_insert((now, 0));
        if e.0 != now {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1 > self.per_minute
    }

    /// Addresses tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.windows.lock().expect("poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_peeks_and_prunes() {
        let l = FailureLimiter::new(2);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(!l.record(a) && !l.record(a));
        assert!(!l.blocked(a), "at the limit, not over it");
        assert!(l.record(a));
        assert!(l.blocked(a));
        assert!(!l.blocked("198.51.100.2".parse().unwrap()));
        // A spray of addresses stays bounded: old windows are pruned once the map is full.
        let l = FailureLimiter {
            start: Instant::now() - WINDOW,
            ..FailureLimiter::new(1)
        };
        for i in 0..PRUNE_ABOVE as u32 {
            l.record(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(l.tracked(), PRUNE_ABOVE);
        // Pretend a minute passed: the next new address prunes every entry of the old window.
        {
            let mut m = l.windows.lock().unwrap();
            for v in m.values_mut() {
                v.0 = 0;
            }
        }
        l.record("203.0.113.1".parse().unwrap());
        assert_eq!(l.tracked(), 1);
    }
}

//! Timestamps: stored as milliseconds since the Unix epoch (portable across PostgreSQL and SQLite,
//! and ordered), shown as RFC 3339.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses RFC 3339 into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| format!("not an RFC 3339 time: {e}"))?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0))
}

/// Parses a duration such as `30d`, `12h` or `90m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("not a duration such as 30d or 12h: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc3339() {
        let ms = 1_700_000_000_123;
        assert_eq!(rfc3339(ms), "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_rfc3339(&rfc3339(ms)).unwrap(), ms);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("soon").is_err());
    }
}

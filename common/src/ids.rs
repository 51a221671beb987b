//! Validated identifiers.

use std::fmt;

/// Longest slug accepted. 63 keeps every id usable as a DNS label and a Kubernetes label value.
pub const SLUG_MAX_LEN: usize = 63;

/// An organisation or node id: 1 to 63 characters of lowercase ASCII letters, digits, `-` and `_`,
/// starting with a letter or digit. `team_a` and `team-a` are different slugs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

impl Slug {
    /// Parses a slug, explaining what is wrong when it is not one.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > SLUG_MAX_LEN {
            return Err(format!("must be at most {SLUG_MAX_LEN} characters"));
        }
        let first = s.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err("must start with a lowercase letter or a digit".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "contains {c:?}: only lowercase letters, digits, '-' and '_' are allowed"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new time-ordered unique id (UUIDv7), so that ids sort by creation and serve as cursors.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The smallest id [`new_id`] can make at `ms` (milliseconds since the epoch): every id made
/// before `ms` sorts below it and every id made from `ms` on sorts at or above it, byte by byte
/// (a UUIDv7 starts with its 48-bit timestamp in hex). What lets a time bound read the primary
/// key instead of a timestamp index.
pub fn id_floor_at(ms: i64) -> String {
    let ms = ms.clamp(0, (1 << 48) - 1) as u64;
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_slugs() {
        for ok in ["a", "team-a", "team_a", "0x", &"a".repeat(63)] {
            assert_eq!(Slug::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_non_slugs() {
        for bad in ["", "-a", "_a", "Team", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn an_id_floor_splits_ids_made_before_from_ids_made_since() {
        let ts = |ms: u64| {
            uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000)
        };
        // Around a carry in the low 16 bits, and at an ordinary time.
        for ms in [0x18f_ffff_u64, 0x190_0000, 1_765_000_000_123] {
            let floor = id_floor_at(ms as i64);
            for _ in 0..50 {
                let before = uuid::Uuid::new_v7(ts(ms - 1)).to_string();
                let at = uuid::Uuid::new_v7(ts(ms)).to_string();
                let after = uuid::Uuid::new_v7(ts(ms + 1)).to_string();
                assert!(before < floor, "{before} < {floor}");
                assert!(floor <= at && at < id_floor_at(ms as i64 + 1), "{at}");
                assert!(after >= floor, "{after} >= {floor}");
            }
        }
        assert!(new_id() > id_floor_at(crate::time::now_ms() - 1));
        assert!(new_id() < id_floor_at(crate::time::now_ms() + 1_000));
        // Out of range: every id is at or above the floor of 0 and below that of the far future.
        assert_eq!(id_floor_at(-5), "00000000-0000-0000-0000-000000000000");
        assert!(new_id() < id_floor_at(i64::MAX));
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = new_id();
        let b = new_id();
        assert!(a < b);
    }
}

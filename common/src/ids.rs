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
    fn ids_sort_by_creation() {
        let a = new_id();
        let b = new_id();
        assert!(a < b);
    }
}

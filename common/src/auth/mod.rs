//! Tokens and service JWTs.
//!
//! # Layout
//! - this file: API tokens (generation, hashing, constant-time comparison) and secrets read
//!   from values or files;
//! - [`service`]: service identities and their short-lived JWTs.
//!
//! API tokens are opaque: a kind prefix and 192 random bits in hex. Only their SHA-256 is stored;
//! because the secret is high-entropy, a fast hash is safe (nothing to brute-force) and lets the
//! store find a token by an indexed lookup on the hash. Comparisons of secrets run in constant time.

mod service;

pub use service::*;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The kinds of API token, each with its own visible prefix so a leaked token is recognisable
/// (and secret scanners can match it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    OrgAdmin,
    Team,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::OrgAdmin => "syo_",
            TokenKind::Team => "syt_",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::OrgAdmin => "org_admin",
            TokenKind::Team => "team",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "org_admin" => Some(TokenKind::OrgAdmin),
            "team" => Some(TokenKind::Team),
            _ => None,
        }
    }
}

/// A freshly generated token: the secret (shown once), the prefix kept for display, and the hash
/// kept at rest.
pub struct NewToken {
    pub secret: String,
    pub display_prefix: String,
    pub hash: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("display_prefix", &self.display_prefix)
            .finish_non_exhaustive()
    }
}

/// A secret from its value or, when unset, the file it is mounted at (trimmed). `what` names it in
/// errors; the secret itself never appears in one.
pub fn read_secret(
    value: Option<&str>,
    file: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(v) = value {
        return Ok(Some(v.trim().to_owned()));
    }
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|v| Some(v.trim().to_owned()))
            .map_err(|e| anyhow::anyhow!("cannot read the {what} file {}: {e}", path.display())),
        None => Ok(None),
    }
}

/// Random hex of `bytes` bytes from the operating system's generator.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

pub fn generate_token(kind: TokenKind) -> NewToken {
    let secret = format!("{}{}", kind.prefix(), random_hex(24));
    NewToken {
        display_prefix: secret[..12].to_owned(),
        hash: hash_token(&secret),
        secret,
    }
}

/// SHA-256 of a token, lowercase hex: what is stored and looked up.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two secrets of any length (compares their digests, so neither the
/// content nor the length leaks through timing).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let da = Sha256::digest(a.as_bytes());
    let db = Sha256::digest(b.as_bytes());
    da.ct_eq(&db).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hashed() {
        let a = generate_token(TokenKind::Team);
        let b = generate_token(TokenKind::Team);
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("syt_"));
        assert_eq!(a.secret.len(), 4 + 48);
        assert_eq!(a.hash, hash_token(&a.secret));
        assert_ne!(a.hash, a.secret);
        assert!(a.secret.starts_with(&a.display_prefix));
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn secrets_compare() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}

//! Tokens and service JWTs.
//!
//! API tokens are opaque: a kind prefix and 192 random bits in hex. Only their SHA-256 is stored;
//! because the secret is high-entropy, a fast hash is safe (nothing to brute-force) and lets the
//! store find a token by an indexed lookup on the hash. Comparisons of secrets run in constant time.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Longest lifetime a service JWT may claim: a stolen one is useless within minutes.
pub const SERVICE_JWT_MAX_TTL_SECS: u64 = 300;

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

/// Claims of a service-to-service JWT.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceClaims {
    /// The calling service, for example `orchestrator`.
    pub sub: String,
    /// The called service, for example `config-service`.
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

/// The shared HS256 key services sign their calls with. Never printed.
#[derive(Clone)]
pub struct ServiceKey(Vec<u8>);

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceJwtError {
    #[error("the service token is not a valid JWT for this service: {0}")]
    Invalid(String),
    #[error("the service token lives longer than {SERVICE_JWT_MAX_TTL_SECS} seconds")]
    TooLong,
}

impl ServiceKey {
    /// At least 32 bytes, as HS256 wants a key as long as its output.
    pub fn new(key: impl Into<Vec<u8>>) -> Result<Self, String> {
        let key = key.into();
        if key.len() < 32 {
            return Err("the service key must be at least 32 bytes".into());
        }
        Ok(Self(key))
    }

    pub fn generate() -> Self {
        Self(random_hex(32).into_bytes())
    }

    /// Signs a token from `sub` to `aud`, valid for `ttl_secs` (capped at the maximum).
    pub fn mint(&self, sub: &str, aud: &str, ttl_secs: u64) -> String {
        let now = unix_now();
        let claims = ServiceClaims {
            sub: sub.to_owned(),
            aud: aud.to_owned(),
            iat: now,
            exp: now + ttl_secs.min(SERVICE_JWT_MAX_TTL_SECS),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.0),
        )
        .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Verifies signature, audience, expiry (30 s leeway for clock skew) and that the token does
    /// not claim a lifetime longer than the maximum.
    pub fn verify(&self, token: &str, audience: &str) -> Result<ServiceClaims, ServiceJwtError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<ServiceClaims>(
            token,
            &DecodingKey::from_secret(&self.0),
            &validation,
        )
        .map_err(|e| ServiceJwtError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.exp > unix_now() + SERVICE_JWT_MAX_TTL_SECS + 30 {
            return Err(ServiceJwtError::TooLong);
        }
        Ok(claims)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

    #[test]
    fn service_jwt_round_trip_and_audience() {
        let key = ServiceKey::generate();
        let t = key.mint("orchestrator", "config-service", 60);
        let c = key.verify(&t, "config-service").unwrap();
        assert_eq!(c.sub, "orchestrator");
        assert!(key.verify(&t, "agent-runner").is_err());
        let other = ServiceKey::generate();
        assert!(other.verify(&t, "config-service").is_err());
    }

    #[test]
    fn service_jwt_rejects_long_lived_and_expired() {
        let key = ServiceKey::new(vec![7u8; 32]).unwrap();
        let now = unix_now();
        let sign = |iat: u64, exp: u64| {
            let claims = ServiceClaims {
                sub: "x".into(),
                aud: "config-service".into(),
                iat,
                exp,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(&[7u8; 32]),
            )
            .unwrap()
        };
        assert_eq!(
            key.verify(&sign(now, now + 3600), "config-service"),
            Err(ServiceJwtError::TooLong)
        );
        assert!(matches!(
            key.verify(&sign(now - 600, now - 120), "config-service"),
            Err(ServiceJwtError::Invalid(_))
        ));
        assert!(ServiceKey::new(vec![1u8; 8]).is_err());
    }
}

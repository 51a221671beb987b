//! Tokens and service JWTs.
//!
//! API tokens are opaque: a kind prefix and 192 random bits in hex. Only their SHA-256 is stored;
//! because the secret is high-entropy, a fast hash is safe (nothing to brute-force) and lets the
//! store find a token by an indexed lookup on the hash. Comparisons of secrets run in constant time.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
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

/// The services that call each other. Each has its own Ed25519 key pair.
pub const SERVICES: [&str; 3] = ["orchestrator", "agent-runner", "config-service"];

/// Service identities for service-to-service JWTs (EdDSA over Ed25519).
///
/// Each service signs its calls with its own private key; the callee verifies them with the
/// caller's public key, which the token's `kid` names and which must match its `sub`. In
/// production a process holds only its own private key (and the others' public keys), so no
/// service can present itself as another; each internal endpoint then checks the caller against
/// an allow-list (`Service::require`). Dev mode and tests hold every private key, in one process.
#[derive(Clone, Default)]
pub struct ServiceKey {
    /// Private keys this process signs with, by service name, with their PKCS#8 documents.
    signers: Arc<BTreeMap<String, (EncodingKey, Vec<u8>)>>,
    /// Public keys (raw 32 bytes) of the services whose calls this process accepts.
    verifiers: Arc<BTreeMap<String, Vec<u8>>>,
}

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKey")
            .field("signs_as", &self.signers.keys().collect::<Vec<_>>())
            .field("accepts", &self.verifiers.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceJwtError {
    #[error("the service token is not a valid JWT for this service: {0}")]
    Invalid(String),
    #[error("the service token lives longer than {SERVICE_JWT_MAX_TTL_SECS} seconds")]
    TooLong,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A new Ed25519 key pair as its PKCS#8 document.
pub fn generate_signing_key() -> Vec<u8> {
    ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .expect("the system random source works")
        .as_ref()
        .to_vec()
}

/// The raw public key of a PKCS#8 Ed25519 document.
fn public_of(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    use ring::signature::KeyPair;
    ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
        .map(|k| k.public_key().as_ref().to_vec())
        .map_err(|_| "not an Ed25519 private key in PKCS#8 form".to_owned())
}

/// Parses `name=base64[,name=base64...]`.
fn named_list(spec: &str, what: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (name, key) = part
                .split_once('=')
                .ok_or_else(|| format!("{what} look like name=base64,name2=base64"))?;
            let bytes = b64()
                .decode(key.trim())
                .map_err(|_| format!("the {what} of {name} is not base64"))?;
            Ok((name.trim().to_owned(), bytes))
        })
        .collect()
}

impl ServiceKey {
    /// Key pairs for every service, in one process (tests, `switchyard dev`).
    pub fn generate() -> Self {
        let mut k = Self::default();
        for name in SERVICES {
            k = k
                .with_signer(name, generate_signing_key())
                .expect("a generated key parses");
        }
        k
    }

    /// Adds a private key (PKCS#8) this process signs as `name` with; its public key is accepted
    /// too.
    pub fn with_signer(mut self, name: &str, pkcs8: Vec<u8>) -> Result<Self, String> {
        let public = public_of(&pkcs8)?;
        Arc::make_mut(&mut self.verifiers).insert(name.to_owned(), public);
        Arc::make_mut(&mut self.signers)
            .insert(name.to_owned(), (EncodingKey::from_ed_der(&pkcs8), pkcs8));
        Ok(self)
    }

    /// Accepts calls from the services in `spec` (`name=base64(raw public key),...`).
    pub fn with_public_keys(mut self, spec: &str) -> Result<Self, String> {
        for (name, key) in named_list(spec, "public keys")? {
            if key.len() != 32 {
                return Err(format!("the public key of {name} must be 32 bytes"));
            }
            Arc::make_mut(&mut self.verifiers).insert(name, key);
        }
        Ok(self)
    }

    /// Whether calls from `name` can be verified.
    pub fn accepts(&self, name: &str) -> bool {
        self.verifiers.contains_key(name)
    }

    /// Every private key, as `name=base64(pkcs8),...` (for `switchyard dev` to keep them).
    pub fn private_keys_spec(&self) -> String {
        self.signers
            .iter()
            .map(|(n, (_, der))| format!("{n}={}", b64().encode(der)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The private key of `name` alone, as base64(pkcs8): what `SWITCHYARD_SERVICE_SIGNING_KEY`
    /// holds for that service.
    pub fn private_key_of(&self, name: &str) -> Option<String> {
        self.signers.get(name).map(|(_, der)| b64().encode(der))
    }

    /// Parses what [`Self::private_keys_spec`] wrote.
    pub fn from_private_keys(spec: &str) -> Result<Self, String> {
        named_list(spec, "private keys")?
            .into_iter()
            .try_fold(Self::default(), |k, (name, der)| k.with_signer(&name, der))
    }

    /// Every known public key, as `name=base64,...` (what other services are configured with).
    pub fn public_keys_spec(&self) -> String {
        self.verifiers
            .iter()
            .map(|(n, k)| format!("{n}={}", b64().encode(k)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The same verifiers, signing only as `name`: what one service of a shared process holds.
    pub fn only(&self, name: &str) -> Self {
        let signers = self
            .signers
            .iter()
            .filter(|(n, _)| n.as_str() == name)
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        Self {
            signers: Arc::new(signers),
            verifiers: self.verifiers.clone(),
        }
    }

    /// Signs a token from `sub` to `aud`, valid for `ttl_secs` (capped at the maximum). Without
    /// `sub`'s private key the token is unsigned garbage that every callee refuses (401).
    pub fn mint(&self, sub: &str, aud: &str, ttl_secs: u64) -> String {
        let Some((key, _)) = self.signers.get(sub) else {
            tracing::error!(service = sub, "no private key to sign as this service");
            return format!("unsigned.{sub}.token");
        };
        let now = unix_now();
        let claims = ServiceClaims {
            sub: sub.to_owned(),
            aud: aud.to_owned(),
            iat: now,
            exp: now + ttl_secs.min(SERVICE_JWT_MAX_TTL_SECS),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(sub.to_owned());
        jsonwebtoken::encode(&header, &claims, key).expect("EdDSA signing of plain claims")
    }

    /// Verifies the signature with the public key of the service the token names (`kid`, which
    /// must equal `sub`), then audience, expiry (30 s leeway for clock skew) and that the token
    /// does not claim a lifetime longer than the maximum. Only EdDSA is accepted.
    pub fn verify(&self, token: &str, audience: &str) -> Result<ServiceClaims, ServiceJwtError> {
        let invalid = |m: String| ServiceJwtError::Invalid(m);
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("the token names no key (kid)".into()))?;
        let public = self
            .verifiers
            .get(&kid)
            .ok_or_else(|| invalid(format!("no key is known for service {kid:?}")))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<ServiceClaims>(
            token,
            &DecodingKey::from_ed_der(public),
            &validation,
        )
        .map_err(|e| invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.sub != kid {
            return Err(invalid(format!(
                "signed with the key of {kid} but claims to be {}",
                claims.sub
            )));
        }
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
        // Keys survive being written out and read back (dev mode keeps them in a file).
        let again = ServiceKey::from_private_keys(&key.private_keys_spec()).unwrap();
        assert!(again.verify(&t, "config-service").is_ok());
        let verifier_only = ServiceKey::default()
            .with_public_keys(&key.public_keys_spec())
            .unwrap();
        assert!(verifier_only.verify(&t, "config-service").is_ok());
    }

    /// One service cannot present itself as another: it holds only its own private key, and a
    /// token signed with it but claiming another subject (or naming another key) is refused.
    #[test]
    fn a_service_cannot_mint_another_identity() {
        let all = ServiceKey::generate();
        let runner = all.only("agent-runner");
        assert!(
            all.verify(
                &runner.mint("agent-runner", "config-service", 60),
                "config-service"
            )
            .is_ok()
        );
        assert!(
            all.verify(
                &runner.mint("orchestrator", "config-service", 60),
                "config-service"
            )
            .is_err()
        );
        let (key, _) = runner.signers.get("agent-runner").unwrap();
        let now = unix_now();
        let claims = ServiceClaims {
            sub: "orchestrator".into(),
            aud: "config-service".into(),
            iat: now,
            exp: now + 60,
        };
        for kid in ["agent-runner", "orchestrator"] {
            let mut h = Header::new(Algorithm::EdDSA);
            h.kid = Some(kid.into());
            let forged = jsonwebtoken::encode(&h, &claims, key).unwrap();
            assert!(all.verify(&forged, "config-service").is_err(), "kid {kid}");
        }
        // No algorithm confusion: an HS256 token keyed with a public key is refused.
        let public = all.verifiers.get("orchestrator").unwrap().clone();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("orchestrator".into());
        let hs = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&public)).unwrap();
        assert!(all.verify(&hs, "config-service").is_err());
    }

    #[test]
    fn service_jwt_rejects_long_lived_and_expired() {
        let key = ServiceKey::generate();
        let (enc, _) = key.signers.get("orchestrator").unwrap().clone();
        let now = unix_now();
        let sign = |iat: u64, exp: u64| {
            let claims = ServiceClaims {
                sub: "orchestrator".into(),
                aud: "config-service".into(),
                iat,
                exp,
            };
            let mut h = Header::new(Algorithm::EdDSA);
            h.kid = Some("orchestrator".into());
            jsonwebtoken::encode(&h, &claims, &enc).unwrap()
        };
        assert_eq!(
            key.verify(&sign(now, now + 3600), "config-service"),
            Err(ServiceJwtError::TooLong)
        );
        assert!(matches!(
            key.verify(&sign(now - 600, now - 120), "config-service"),
            Err(ServiceJwtError::Invalid(_))
        ));
        assert!(ServiceKey::default().with_public_keys("x=AAAA").is_err());
        assert!(ServiceKey::from_private_keys("x=AAAA").is_err());
    }
}

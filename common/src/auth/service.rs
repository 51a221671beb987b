//! Service identities: each service signs its calls to the others with its own Ed25519 key, as a
//! short-lived JWT the callee verifies.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Longest lifetime a service JWT may claim: a stolen one is useless within minutes.
pub const SERVICE_JWT_MAX_TTL_SECS: u64 = 300;

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
    /// Tokens minted, by (sub, aud, ttl), with their expiry: reused while at least half their
    /// lifetime is left (an Ed25519 signature per call was a tenth of the agent-runner's CPU).
    minted: Arc<Mutex<HashMap<MintSlot, (String, u64)>>>,
    /// Tokens verified, by (token, audience): their claims, until they expire. Bounded.
    verified: Arc<Mutex<HashMap<(String, String), ServiceClaims>>>,
}

/// (subject, audience, lifetime) of a minted token.
type MintSlot = (String, String, u64);

/// Most verified tokens remembered; the memory is cleared when it is full.
const VERIFIED_CACHE: usize = 4096;

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
        self.forget();
        Arc::make_mut(&mut self.verifiers).insert(name.to_owned(), public);
        Arc::make_mut(&mut self.signers)
            .insert(name.to_owned(), (EncodingKey::from_ed_der(&pkcs8), pkcs8));
        Ok(self)
    }

    /// Accepts calls from the services in `spec` (`name=base64(raw public key),...`).
    pub fn with_public_keys(mut self, spec: &str) -> Result<Self, String> {
        self.forget();
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
            minted: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// Drops what was minted and verified with the keys before a change (caches of their own).
    fn forget(&mut self) {
        self.minted = Arc::default();
        self.verified = Arc::default();
    }

    /// Signs a token from `sub` to `aud`, valid for `ttl_secs` (capped at the maximum). Without
    /// `sub`'s private key the token is unsigned garbage that every callee refuses (401).
    pub fn mint(&self, sub: &str, aud: &str, ttl_secs: u64) -> String {
        let Some((key, _)) = self.signers.get(sub) else {
            tracing::error!(service = sub, "no private key to sign as this service");
            return format!("unsigned.{sub}.token");
        };
        let now = unix_now();
        let ttl = ttl_secs.min(SERVICE_JWT_MAX_TTL_SECS);
        let slot = (sub.to_owned(), aud.to_owned(), ttl);
        if let Some((token, exp)) = self.minted.lock().unwrap().get(&slot)
            && *exp >= now + ttl.div_ceil(2)
        {
            return token.clone();
        }
        let claims = ServiceClaims {
            sub: sub.to_owned(),
            aud: aud.to_owned(),
            iat: now,
            exp: now + ttl,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(sub.to_owned());
        let token =
            jsonwebtoken::encode(&header, &claims, key).expect("EdDSA signing of plain claims");
        self.minted
            .lock()
            .unwrap()
            .insert(slot, (token.clone(), claims.exp));
        token
    }

    /// Verifies the signature with the public key of the service the token names (`kid`, which
    /// must equal `sub`), then audience, expiry (30 s leeway for clock skew) and that the token
    /// does not claim a lifetime longer than the maximum. Only EdDSA is accepted.
    pub fn verify(&self, token: &str, audience: &str) -> Result<ServiceClaims, ServiceJwtError> {
        let slot = (token.to_owned(), audience.to_owned());
        let now = unix_now();
        {
            let mut seen = self.verified.lock().unwrap();
            match seen.get(&slot) {
                // The same checks passed for these bytes; only time can have changed.
                Some(c) if c.exp + 30 >= now => return Ok(c.clone()),
                Some(_) => {
                    seen.remove(&slot);
                }
                None => {}
            }
        }
        let claims = self.verify_signed(token, audience)?;
        let mut seen = self.verified.lock().unwrap();
        if seen.len() >= VERIFIED_CACHE {
            seen.clear();
        }
        seen.insert(slot, claims.clone());
        Ok(claims)
    }

    fn verify_signed(&self, token: &str, audience: &str) -> Result<ServiceClaims, ServiceJwtError> {
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

    /// A minted token is reused for half its lifetime; a verified one is not verified again, but
    /// a cached verification never outlives the token, and a changed key set starts afresh.
    #[test]
    fn tokens_are_minted_and_verified_once_per_lifetime() {
        let key = ServiceKey::generate();
        let a = key.mint("agent-runner", "config-service", 60);
        assert_eq!(a, key.mint("agent-runner", "config-service", 60));
        assert_ne!(a, key.mint("agent-runner", "orchestrator", 60));
        assert_eq!(key.verified.lock().unwrap().len(), 0);
        assert!(key.verify(&a, "config-service").is_ok());
        assert!(key.verify(&a, "config-service").is_ok());
        assert_eq!(key.verified.lock().unwrap().len(), 1);
        // Another audience is checked on its own, and refused.
        assert!(key.verify(&a, "orchestrator").is_err());
        // A cached verification of a token that has since expired is dropped and refused.
        let (enc, _) = key.signers.get("orchestrator").unwrap().clone();
        let now = unix_now();
        let claims = ServiceClaims {
            sub: "orchestrator".into(),
            aud: "config-service".into(),
            iat: now - 200,
            exp: now - 100,
        };
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("orchestrator".into());
        let old = jsonwebtoken::encode(&h, &claims, &enc).unwrap();
        key.verified
            .lock()
            .unwrap()
            .insert((old.clone(), "config-service".into()), claims);
        assert!(key.verify(&old, "config-service").is_err());
        // Keys changed: nothing cached carries over.
        let fewer = key.only("agent-runner");
        assert_eq!(fewer.verified.lock().unwrap().len(), 0);
        assert_eq!(fewer.minted.lock().unwrap().len(), 0);
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

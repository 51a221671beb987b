//! Secrets at rest (webhook signing secrets, the org secrets store): XChaCha20-Poly1305 under a
//! master key.
//!
//! Master keys have ids, so the key can be rotated: the first configured key encrypts, every
//! configured key decrypts, and `keyring.needs_reencryption(key_id)` tells which rows to rewrite.
//! The ciphertext is bound to its row (for example integration id and secret id as associated
//! data), so a ciphertext copied onto another row does not decrypt. XChaCha's 192-bit nonces make
//! random nonces safe.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// The master keys, first one active.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// An encrypted secret as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: String,
    pub ciphertext: String,
}

impl Keyring {
    /// Parses `id=base64key[,id=base64key...]`; each key is 32 bytes.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, key) = part
                .split_once('=')
                .ok_or_else(|| "master keys look like id=base64key,id2=base64key".to_owned())?;
            let bytes = B64
                .decode(key.trim())
                .map_err(|_| format!("master key {id} is not base64"))?;
            if bytes.len() != 32 {
                return Err(format!(
                    "master key {id} must be 32 bytes, not {}",
                    bytes.len()
                ));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|e| e.to_string())?;
            keys.push((id.trim().to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err("no master key configured".into());
        }
        Ok(Self { keys })
    }

    /// A fresh key spec (`dev=<base64>`), for dev mode and tests.
    pub fn generate_spec(id: &str) -> String {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        format!("{id}={}", B64.encode(k))
    }

    pub fn active_key_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Sealed {
        let (id, cipher) = &self.keys[0];
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("encryption with a valid key cannot fail");
        Sealed {
            key_id: id.clone(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ct),
        }
    }

    pub fn open(&self, sealed: &Sealed, aad: &str) -> Result<Vec<u8>, String> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key_id)
            .ok_or_else(|| format!("master key {} is not configured", sealed.key_id))?;
        let nonce = hex::decode(&sealed.nonce).map_err(|_| "corrupt nonce".to_owned())?;
        if nonce.len() != 24 {
            return Err("corrupt nonce".into());
        }
        let ct = hex::decode(&sealed.ciphertext).map_err(|_| "corrupt ciphertext".to_owned())?;
        cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| "the secret does not decrypt (wrong key or tampered)".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_its_row() {
        let k = Keyring::parse(&Keyring::generate_spec("k1")).unwrap();
        let s = k.seal(b"whsec_abc", "int-1/sec-1");
        assert_ne!(s.ciphertext, hex::encode(b"whsec_abc"));
        assert_eq!(k.open(&s, "int-1/sec-1").unwrap(), b"whsec_abc");
        assert!(k.open(&s, "int-2/sec-1").is_err(), "moved to another row");
        let mut tampered = s.clone();
        tampered.ciphertext.replace_range(
            0..2,
            if &s.ciphertext[0..2] == "00" {
                "01"
            } else {
                "00"
            },
        );
        assert!(k.open(&tampered, "int-1/sec-1").is_err());
    }

    #[test]
    fn rotation_new_key_encrypts_old_key_still_decrypts() {
        let old = Keyring::generate_spec("old");
        let new = Keyring::generate_spec("new");
        let before = Keyring::parse(&old).unwrap();
        let sealed = before.seal(b"s", "a");
        let after = Keyring::parse(&format!("{new},{old}")).unwrap();
        assert_eq!(after.active_key_id(), "new");
        assert_eq!(after.open(&sealed, "a").unwrap(), b"s");
        assert_eq!(after.seal(b"t", "a").key_id, "new");
        assert!(Keyring::parse(&new).unwrap().open(&sealed, "a").is_err());
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(Keyring::parse("").is_err());
        assert!(Keyring::parse("k1").is_err());
        assert!(Keyring::parse("k1=bm90MzJieXRlcw==").is_err());
        assert!(
            !format!(
                "{:?}",
                Keyring::parse(&Keyring::generate_spec("k")).unwrap()
            )
            .contains('=')
        );
    }
}

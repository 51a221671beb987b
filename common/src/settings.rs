//! Settings every service shares.

use std::path::PathBuf;

use base64::Engine;

use crate::auth::{ServiceKey, read_secret};
use crate::crypto::Keyring;

/// Secrets, each from the environment or a file (a mounted Kubernetes Secret). Never logged.
#[derive(Clone, Default, clap::Args)]
pub struct SecretSettings {
    /// The platform admin token.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// File holding the platform admin token (used when `--admin-token` is unset).
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// This service's own Ed25519 private key (base64 of its PKCS#8 document, from
    /// `switchyard keygen`), which signs its calls to the other services. The config-service calls
    /// nobody and needs none.
    #[arg(long, env = "SWITCHYARD_SERVICE_SIGNING_KEY", hide_env_values = true)]
    pub service_signing_key: Option<String>,

    /// File holding the signing key (used when `--service-signing-key` is unset).
    #[arg(long, env = "SWITCHYARD_SERVICE_SIGNING_KEY_FILE")]
    pub service_signing_key_file: Option<PathBuf>,

    /// The public keys of the services whose calls this one accepts:
    /// `orchestrator=<base64>,agent-runner=<base64>` (not secret).
    #[arg(long, env = "SWITCHYARD_SERVICE_PUBLIC_KEYS", default_value = "")]
    pub service_public_keys: String,

    /// Master keys for secrets at rest (webhook secrets in the orchestrator, the org secrets store
    /// in the config-service): `id=base64(32 bytes)[,id=...]`; the first encrypts, all decrypt.
    #[arg(long, env = "SWITCHYARD_MASTER_KEYS", hide_env_values = true)]
    pub master_keys: Option<String>,

    /// File holding the master keys (used when `--master-keys` is unset).
    #[arg(long, env = "SWITCHYARD_MASTER_KEYS_FILE")]
    pub master_keys_file: Option<PathBuf>,
}

impl std::fmt::Debug for SecretSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSettings")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_token_file", &self.admin_token_file)
            .field(
                "service_signing_key",
                &self.service_signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("service_signing_key_file", &self.service_signing_key_file)
            .field("service_public_keys", &self.service_public_keys)
            .field(
                "master_keys",
                &self.master_keys.as_ref().map(|_| "<redacted>"),
            )
            .field("master_keys_file", &self.master_keys_file)
            .finish()
    }
}

impl SecretSettings {
    /// The platform admin token, if configured. Refuses tokens too short to be safe.
    pub fn admin_token(&self) -> anyhow::Result<Option<String>> {
        let token = read_secret(
            self.admin_token.as_deref(),
            self.admin_token_file.as_deref(),
            "admin token",
        )?;
        if let Some(t) = &token
            && t.len() < 16
        {
            anyhow::bail!("the platform admin token must be at least 16 characters");
        }
        Ok(token)
    }

    /// The master keys; an error when none are configured (secrets are never stored in clear).
    pub fn keyring(&self) -> anyhow::Result<Keyring> {
        let spec = read_secret(
            self.master_keys.as_deref(),
            self.master_keys_file.as_deref(),
            "master keys",
        )?
        .ok_or_else(|| {
            anyhow::anyhow!("set SWITCHYARD_MASTER_KEYS (or _FILE): secrets are encrypted at rest")
        })?;
        Keyring::parse(&spec).map_err(anyhow::Error::msg)
    }

    /// The identity of service `me` (its signing key; `None` for a service that calls nobody)
    /// and the public keys of the `callers` it accepts, each of which must be configured.
    pub fn service_key(&self, me: Option<&str>, callers: &[&str]) -> anyhow::Result<ServiceKey> {
        let mut key = ServiceKey::default()
            .with_public_keys(&self.service_public_keys)
            .map_err(anyhow::Error::msg)?;
        if let Some(me) = me {
            let signing = read_secret(
                self.service_signing_key.as_deref(),
                self.service_signing_key_file.as_deref(),
                "service signing key",
            )?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "set SWITCHYARD_SERVICE_SIGNING_KEY (or _FILE) to the {me}'s private key: `switchyard keygen --service {me}` makes one"
                )
            })?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(signing.trim())
                .map_err(|_| anyhow::anyhow!("the service signing key is not base64"))?;
            key = key.with_signer(me, der).map_err(anyhow::Error::msg)?;
        }
        if let Some(missing) = callers.iter().find(|c| !key.accepts(c)) {
            anyhow::bail!(
                "set SWITCHYARD_SERVICE_PUBLIC_KEYS with the public key of {missing} (name=base64,...), whose calls this service accepts"
            );
        }
        Ok(key)
    }
}

//! Settings every service shares.

use std::path::PathBuf;

use crate::auth::{ServiceKey, read_secret};
use crate::crypto::Keyring;

/// Secrets, each from the environment or a file (a mounted Kubernetes Secret). Never logged.
#[derive(Clone, clap::Args)]
pub struct SecretSettings {
    /// The platform admin token.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// File holding the platform admin token (used when `--admin-token` is unset).
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Shared HS256 key (at least 32 bytes) for service-to-service JWTs.
    #[arg(long, env = "SWITCHYARD_SERVICE_KEY", hide_env_values = true)]
    pub service_key: Option<String>,

    /// File holding the service key (used when `--service-key` is unset).
    #[arg(long, env = "SWITCHYARD_SERVICE_KEY_FILE")]
    pub service_key_file: Option<PathBuf>,

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
                "service_key",
                &self.service_key.as_ref().map(|_| "<redacted>"),
            )
            .field("service_key_file", &self.service_key_file)
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

    /// The service key; `None` when not configured.
    pub fn service_key(&self) -> anyhow::Result<Option<ServiceKey>> {
        read_secret(
            self.service_key.as_deref(),
            self.service_key_file.as_deref(),
            "service key",
        )?
        .map(|k| ServiceKey::new(k.into_bytes()).map_err(anyhow::Error::msg))
        .transpose()
    }
}

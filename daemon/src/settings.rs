//! Everything the daemon needs to run, resolved from the config file and
//! the secret files it names.
//!
//! The config file is parsed and checked by `soong-protocol`; this module
//! adds what needs the filesystem: reading the secrets (and warning when a
//! secret file is readable by every user), and the knobs tests turn (client
//! pacing and retry) that are not part of the file's contract.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lambda_cloud::{Pacing, RetryPolicy};
use soong_protocol::config::{ConfigError, DaemonConfig, Secret};

/// A resolved, ready-to-run configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file it came from (for messages).
    pub config_file: PathBuf,
    /// The parsed and checked config.
    pub config: DaemonConfig,
    /// The API's bearer token.
    pub token: Secret,
    /// The Lambda API key.
    pub api_key: Secret,
    /// The worker, if configured.
    pub worker: Option<WorkerSettings>,
    /// How the Lambda client is paced and retries.
    pub client: ClientSettings,
    /// How the terminator backs off between rounds of terminate calls.
    pub terminate_backoff: Backoff,
    /// How identity resolution backs off.
    pub identity_backoff: Backoff,
}

/// The worker's address and this instance's heartbeat token.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Base URL.
    pub url: String,
    /// Bearer token for `POST /heartbeat`.
    pub token: Secret,
    /// How often to push.
    pub interval: Duration,
}

/// Lambda client options.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// Request pacing (Lambda's limits by default).
    pub pacing: Pacing,
    /// Retries within one call.
    pub retry: RetryPolicy,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            pacing: Pacing::default(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(15),
        }
    }
}

/// Exponential backoff with full jitter, bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait before round `round` (1-based), at least `floor` (a
    /// `Retry-After`, say).
    pub fn delay(&self, round: u32, floor: Option<Duration>) -> Duration {
        use rand::Rng;
        let bound = self
            .base
            .saturating_mul(1u32 << round.saturating_sub(1).min(16))
            .min(self.max);
        // Never less than half the bound: a daemon must not hammer the API
        // even when the dice roll low.
        let wait = rand::rng().random_range(bound / 2..=bound);
        floor.map_or(wait, |floor| wait.max(floor.min(self.max)))
    }
}

/// Why the settings could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read the config file `{}`", .file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret file could not be read.
    #[error("cannot read `{key}` from `{}`", .file.display())]
    Secret {
        /// The config key that names the file.
        key: &'static str,
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A secret file holds nothing.
    #[error("`{}` (named by `{key}`) is empty", .file.display())]
    EmptySecret {
        /// The config key.
        key: &'static str,
        /// The file.
        file: PathBuf,
    },
}

/// Reads and checks the config file (no secrets): `soong-daemon check-config`.
pub fn load_config(file: &Path) -> Result<DaemonConfig, SettingsError> {
    let text = fs::read_to_string(file).map_err(|source| SettingsError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    Ok(DaemonConfig::load(file, &text)?)
}

impl Settings {
    /// Reads the config file and its secrets.
    pub fn load(file: &Path) -> Result<Self, SettingsError> {
        let config = load_config(file)?;
        Self::from_config(file, config)
    }

    /// Resolves the secrets of an already checked config.
    pub fn from_config(file: &Path, config: DaemonConfig) -> Result<Self, SettingsError> {
        let token = secret(
            "token_file",
            config.token.as_ref(),
            config.token_file.as_deref(),
        )?;
        let api_key = secret(
            "lambda.api_key_file",
            config.lambda.api_key.as_ref(),
            config.lambda.api_key_file.as_deref(),
        )?;
        let worker = match &config.worker {
            Some(worker) => Some(WorkerSettings {
                url: worker.url.clone(),
                token: secret(
                    "worker.token_file",
                    worker.token.as_ref(),
                    worker.token_file.as_deref(),
                )?,
                interval: worker.heartbeat_interval,
            }),
            None => None,
        };
        Ok(Self {
            config_file: file.to_path_buf(),
            config,
            token,
            api_key,
            worker,
            client: ClientSettings::default(),
            terminate_backoff: Backoff {
                base: Duration::from_secs(2),
                max: Duration::from_secs(60),
            },
            identity_backoff: Backoff {
                base: Duration::from_secs(2),
                max: Duration::from_secs(60),
            },
        })
    }
}

/// The inline secret, or the contents of its file (trimmed of the trailing
/// newline editors add). `check()` already made sure exactly one is set.
fn secret(
    key: &'static str,
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Secret, SettingsError> {
    if let Some(secret) = inline {
        return Ok(secret.clone());
    }
    let Some(file) = file else {
        return Err(SettingsError::EmptySecret {
            key,
            file: PathBuf::new(),
        });
    };
    let fail = |source| SettingsError::Secret {
        key,
        file: file.to_path_buf(),
        source,
    };
    let metadata = fs::metadata(file).map_err(fail)?;
    if metadata.permissions().mode() & 0o004 != 0 {
        log::warn!(
            "secret file `{}` (`{key}`) is readable by every user; restrict it with `chmod 600`",
            file.display()
        );
    }
    let text = fs::read_to_string(file).map_err(fail)?;
    let value = text.trim();
    if value.is_empty() {
        return Err(SettingsError::EmptySecret {
            key,
            file: file.to_path_buf(),
        });
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_from_files_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        fs::write(&token, "s3cret\n").unwrap();
        assert_eq!(
            secret("token_file", None, Some(&token)).unwrap().expose(),
            "s3cret"
        );
        fs::write(&token, "\n").unwrap();
        assert!(matches!(
            secret("token_file", None, Some(&token)),
            Err(SettingsError::EmptySecret { .. })
        ));
        assert!(matches!(
            secret("token_file", None, Some(&dir.path().join("nope"))),
            Err(SettingsError::Secret { .. })
        ));
    }

    #[test]
    fn backoff_grows_to_its_bound_and_honours_a_floor() {
        let backoff = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        assert!(backoff.delay(1, None) <= Duration::from_secs(2));
        assert!(backoff.delay(1, None) >= Duration::from_secs(1));
        assert!(backoff.delay(30, None) <= Duration::from_secs(60));
        assert!(backoff.delay(1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
    }
}

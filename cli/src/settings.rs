//! Settings: the config file (DESIGN.md §3.1), the environment and the
//! flags, merged into one typed [`Settings`].
//!
//! The file is read in two steps, as ntpd-rs does: strict parsing that names
//! the file and the key of anything unknown or malformed, then checks made
//! by each command for what it needs (a partial file is fine until a command
//! needs the part that is missing, and then the message says which key).
//! Writes are atomic (temp file, fsync, rename) with mode 0600 in a 0700
//! directory, because the file holds the API key.

use std::collections::BTreeMap;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use soong_protocol::config::Secret;

use crate::args::GlobalArgs;
use crate::exit::UserError;
use crate::models::CustomModel;
use crate::output::{Printer, Verbosity};

/// `LAMBDA_API_KEY`: the API key; wins over `lambda.api_key`.
pub const ENV_API_KEY: &str = "LAMBDA_API_KEY";
/// `SOONG_API_URL`: the API's base URL; wins over `lambda.api_url`.
pub const ENV_API_URL: &str = "SOONG_API_URL";
/// `SOONG_CONFIG`: the config file; `--config` wins over it.
pub const ENV_CONFIG: &str = "SOONG_CONFIG";
/// `NO_COLOR`: any non-empty value turns colours off.
pub const ENV_NO_COLOR: &str = "NO_COLOR";
/// `SOONG_NO_PACING`: set to `1` to drop client-side pacing (for the
/// simulator, whose rate limits are off in tests; never against Lambda).
pub const ENV_NO_PACING: &str = "SOONG_NO_PACING";
/// `SOONG_WAIT_SCALE`: a factor (e.g. `0.05`) applied to the boot and
/// health timeouts of `start`, so tests of the failure paths are quick.
pub const ENV_WAIT_SCALE: &str = "SOONG_WAIT_SCALE";

/// The config file's default place, under the home directory.
pub const DEFAULT_CONFIG_PATH: &str = ".config/gpu-dashboard/config.yaml";

/// How the CLI reaches an instance's daemon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Through SSH to its loopback listener (the default on real instances).
    #[default]
    Ssh,
    /// Plain HTTP to `<ip>:<port>` (the simulator and the demo).
    Direct,
}

/// The config file, `~/.config/gpu-dashboard/config.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The Lambda account.
    #[serde(default)]
    pub lambda: LambdaSection,
    /// The on-instance daemon.
    #[serde(default)]
    pub status_daemon: StatusDaemonSection,
    /// Defaults for `start`.
    #[serde(default)]
    pub defaults: DefaultsSection,
    /// How to log in to instances.
    #[serde(default)]
    pub ssh: SshSection,
    /// The watchdog worker, if deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerSection>,
    /// Models beyond the built-in ones, by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_models: BTreeMap<String, CustomModel>,
    /// What an instance is provisioned with (DESIGN.md §3.5).
    #[serde(default, skip_serializing_if = "ProvisionSection::is_empty")]
    pub provision: ProvisionSection,
}

/// `provision:`: what the user-data (or the Ansible playbook) installs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionSection {
    /// Where instances download `soong-daemon` [default: the release's,
    /// when this build was given `SOONG_DAEMON_URL`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_binary_url: Option<String>,
    /// The binary's pinned sha256, 64 lowercase hex digits [default: the
    /// release's, when this build was given `SOONG_DAEMON_SHA256`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_binary_sha256: Option<String>,
    /// The SGLang release installed [default: `DEFAULT_SGLANG_VERSION`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sglang_version: Option<String>,
    /// The n8n release run [default: `DEFAULT_N8N_VERSION`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n8n_version: Option<String>,
    /// A Hugging Face token, for gated models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_token: Option<Secret>,
}

impl ProvisionSection {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The daemon binary's URL and sha256: the config's, else this build's
    /// (`SOONG_DAEMON_URL`, `SOONG_DAEMON_SHA256` at compile time).
    pub fn daemon_binary(&self) -> (Option<&str>, Option<&str>) {
        fn pick<'a>(value: Option<&'a str>, built: Option<&'static str>) -> Option<&'a str> {
            value
                .filter(|v| !v.is_empty())
                .or(built.filter(|v| !v.is_empty()))
        }
        (
            pick(
                self.daemon_binary_url.as_deref(),
                option_env!("SOONG_DAEMON_URL"),
            ),
            pick(
                self.daemon_binary_sha256.as_deref(),
                option_env!("SOONG_DAEMON_SHA256"),
            ),
        )
    }
}

/// `lambda:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaSection {
    /// The API key (`LAMBDA_API_KEY` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// The API's base URL (`SOONG_API_URL` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Where to launch by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
    /// The persistent filesystem to attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem_name: Option<String>,
    /// The one SSH key to launch with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_name: Option<String>,
}

/// `status_daemon:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusDaemonSection {
    /// The daemon API's bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// The daemon's port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// How to reach the daemon.
    #[serde(default)]
    pub access: Access,
}

impl Default for StatusDaemonSection {
    fn default() -> Self {
        Self {
            token: None,
            port: default_port(),
            access: Access::default(),
        }
    }
}

fn default_port() -> u16 {
    8080
}

/// `defaults:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    /// The model `start` serves without `--model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The instance type `start` uses without `--gpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// The lease, 1..8 hours.
    #[serde(default = "default_lease_hours")]
    pub lease_hours: u8,
    /// The idle timeout in minutes.
    #[serde(default = "default_idle_minutes")]
    pub idle_timeout_minutes: u32,
}

impl Default for DefaultsSection {
    fn default() -> Self {
        Self {
            model: None,
            gpu: None,
            lease_hours: default_lease_hours(),
            idle_timeout_minutes: default_idle_minutes(),
        }
    }
}

fn default_lease_hours() -> u8 {
    4
}
fn default_idle_minutes() -> u32 {
    30
}

/// `ssh:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSection {
    /// The private key to log in with.
    #[serde(default = "default_key_path")]
    pub key_path: String,
    /// The login user.
    #[serde(default = "default_user")]
    pub user: String,
    /// The instances' SSH port (written only when not 22).
    #[serde(
        default = "default_ssh_port",
        skip_serializing_if = "is_default_ssh_port"
    )]
    pub port: u16,
}

impl Default for SshSection {
    fn default() -> Self {
        Self {
            key_path: default_key_path(),
            user: default_user(),
            port: default_ssh_port(),
        }
    }
}

fn default_key_path() -> String {
    "~/.ssh/id_ed25519".to_owned()
}
fn default_user() -> String {
    "ubuntu".to_owned()
}
fn default_ssh_port() -> u16 {
    22
}
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_default_ssh_port(port: &u16) -> bool {
    *port == 22
}

/// `worker:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// The worker's URL (set by `soong worker deploy`; until then no
    /// instance heartbeats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The HMAC key shared with the worker (`WORKER_SECRET`; generated by
    /// `soong worker deploy` when missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// The bearer token of the worker's `/events` and `/instances`
    /// (`ADMIN_TOKEN`); `history` reads the worker's events with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// The worker's name on Cloudflare [default: `soong-watchdog`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Cloudflare account id (`CLOUDFLARE_ACCOUNT_ID` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare_account_id: Option<String>,
    /// A Cloudflare API token allowed to edit Workers, KV and cron
    /// (`CLOUDFLARE_API_TOKEN` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare_api_token: Option<Secret>,
    /// The worker's KV namespace (set by `soong worker deploy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_namespace_id: Option<String>,
}

impl WorkerSection {
    /// The worker's URL, when deployed.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref().filter(|u| !u.is_empty())
    }

    /// The URL and HMAC key instances need to send heartbeats, when both
    /// are configured.
    pub fn heartbeats(&self) -> Option<(&str, &Secret)> {
        Some((self.url()?, self.secret.as_ref()?))
    }
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read the config file `{}`", .file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Nothing but whitespace and comments.
    #[error("the config file `{}` is empty", .file.display())]
    Empty {
        /// The file.
        file: PathBuf,
    },
    /// Not YAML, or not a mapping.
    #[error("the config file `{}` is not valid YAML: {message}", .file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key soong does not know (often a typo).
    #[error("unknown key `{key}` in the config file `{}`", .file.display())]
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
    },
    /// A key that is required inside its section is missing.
    #[error("missing key `{key}` in the config file `{}`", .file.display())]
    MissingKey {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
    },
    /// A value of the wrong type or out of range.
    #[error("invalid value for `{key}` in the config file `{}`: {message}", .file.display())]
    InvalidValue {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The file could not be written.
    #[error("cannot write the config file `{}`", .file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Empty { .. } => Some(
                "add at least `lambda.api_key` and `lambda.ssh_key_name`, or delete the file and set `LAMBDA_API_KEY`"
                    .to_owned(),
            ),
            Self::UnknownKey { key, .. } => Some(format!(
                "remove `{key}` or fix its spelling; the keys are listed in DESIGN.md §3.1 and `docs/guide/configuration.md`"
            )),
            Self::InvalidValue { .. } | Self::MissingKey { .. } | Self::Syntax { .. } => {
                Some("fix the value in the file; the format is in `docs/guide/configuration.md`".to_owned())
            }
            Self::Read { .. } | Self::Write { .. } => None,
        }
    }
}

impl ConfigFile {
    /// Parses the text of `file`, refusing anything unknown.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|error| ConfigError::Syntax {
                file: file.to_path_buf(),
                message: error.to_string(),
            })?;
        let mut value = match value {
            serde_yaml::Value::Null => {
                return Err(ConfigError::Empty {
                    file: file.to_path_buf(),
                });
            }
            serde_yaml::Value::Mapping(mapping) => mapping,
            _ => {
                return Err(ConfigError::Syntax {
                    file: file.to_path_buf(),
                    message: "expected a mapping of sections (`lambda:`, `defaults:`, …)"
                        .to_owned(),
                });
            }
        };
        // A section left empty (`defaults:` with nothing under it) is null
        // in YAML; read it as "all defaults", which is what its writer meant.
        for (_, section) in &mut value {
            if section.is_null() {
                *section = serde_yaml::Value::Mapping(serde_yaml::Mapping::new());
            }
        }
        let config: Self = serde_path_to_error::deserialize(serde_yaml::Value::Mapping(value))
            .map_err(|error| {
                classify(file, &error.path().to_string(), &error.inner().to_string())
            })?;
        config.check(file)?;
        Ok(config)
    }

    /// Values that parse but cannot be right.
    fn check(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::InvalidValue {
            file: file.to_path_buf(),
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if !(1..=8).contains(&self.defaults.lease_hours) {
            return Err(invalid("defaults.lease_hours", "must be between 1 and 8"));
        }
        if self.defaults.idle_timeout_minutes == 0 {
            return Err(invalid(
                "defaults.idle_timeout_minutes",
                "must be at least 1",
            ));
        }
        if self.ssh.port == 0 {
            return Err(invalid("ssh.port", "must not be 0"));
        }
        if self.status_daemon.port == 0 {
            return Err(invalid("status_daemon.port", "must not be 0"));
        }
        for (id, model) in &self.custom_models {
            if let Err(message) = model.check() {
                return Err(invalid(&format!("custom_models.{id}"), &message));
            }
        }
        Ok(())
    }

    /// Reads `file`; a missing file is an empty config (`None` marks it).
    pub fn load(file: &Path) -> Result<Option<Self>, ConfigError> {
        match fs::read_to_string(file) {
            Ok(text) => Self::parse(file, &text).map(Some),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::Read {
                file: file.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the config to `file` atomically, 0600 in a 0700 directory.
    pub fn save(&self, file: &Path) -> Result<(), ConfigError> {
        let write_error = |source| ConfigError::Write {
            file: file.to_path_buf(),
            source,
        };
        let text = serde_yaml::to_string(self)
            .map_err(|error| write_error(std::io::Error::other(error.to_string())))?;
        crate::private_file::write(file, text.as_bytes()).map_err(write_error)
    }
}

/// Turns serde's message into the variant that names the key.
fn classify(file: &Path, path: &str, message: &str) -> ConfigError {
    let file = file.to_path_buf();
    let quoted = |prefix: &str| {
        message
            .find(prefix)
            .map(|at| &message[at + prefix.len()..])
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    // serde_path_to_error ends the path with an unknown field's name, but
    // not with a missing one's.
    let join = |field: &str| {
        if path == field || path.ends_with(&format!(".{field}")) {
            path.to_owned()
        } else if path.is_empty() || path == "." {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = quoted("unknown field `") {
        return ConfigError::UnknownKey {
            file,
            key: join(&field),
        };
    }
    if let Some(field) = quoted("missing field `") {
        return ConfigError::MissingKey {
            file,
            key: join(&field),
        };
    }
    ConfigError::InvalidValue {
        file,
        key: path.to_owned(),
        message: message.to_owned(),
    }
}

/// Everything a command needs to know about how it was asked to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the config file is (whether or not it exists).
    pub config_path: PathBuf,
    /// Whether it exists.
    pub config_exists: bool,
    /// The file's contents (defaults when it does not exist).
    pub config: ConfigFile,
    /// The API key, from `LAMBDA_API_KEY` or the file.
    pub api_key: Option<Secret>,
    /// The API's base URL, from `SOONG_API_URL`, the file, or Lambda's.
    pub api_url: String,
    /// `-y`.
    pub yes: bool,
    /// `--instance`.
    pub instance: Option<String>,
    /// Whether stdin is a terminal (prompts are possible).
    pub interactive: bool,
    /// Drop client-side pacing (`SOONG_NO_PACING=1`).
    pub no_pacing: bool,
    /// Factor for `start`'s waits (`SOONG_WAIT_SCALE`).
    pub wait_scale: f64,
    /// Where soong keeps its state: tunnel records, the history log.
    pub state_dir: PathBuf,
}

/// A fresh daemon token: 32 random bytes, URL-safe base64 (no padding).
pub fn generate_token() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The printer the flags and the environment ask for.
pub fn printer(global: &GlobalArgs) -> Printer {
    let verbosity = if global.quiet {
        Verbosity::Quiet
    } else if global.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let no_color_env = std::env::var_os(ENV_NO_COLOR).is_some_and(|v| !v.is_empty());
    let color = !global.no_color && !no_color_env && std::io::stderr().is_terminal();
    Printer::new(verbosity, global.json, color)
}

/// The config file's path: `--config`/`SOONG_CONFIG` (clap merges the two),
/// else under the home directory.
pub fn config_path(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &global.config {
        return Ok(path.clone());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            UserError::new("cannot find the config file: `HOME` is not set")
                .hint(format!("pass `--config PATH` or set `{ENV_CONFIG}`"))
        })?;
    Ok(PathBuf::from(home).join(DEFAULT_CONFIG_PATH))
}

/// `XDG_STATE_HOME`: where soong keeps its state (tunnel records, the
/// history log) under `soong/`; default `~/.local/state`.
pub const ENV_XDG_STATE_HOME: &str = "XDG_STATE_HOME";

/// soong's state directory for these settings.
pub fn state_dir(settings: &Settings) -> PathBuf {
    settings.state_dir.clone()
}

/// soong's state directory: `$XDG_STATE_HOME/soong`, else
/// `~/.local/state/soong`, else (no home) the config file's directory.
fn default_state_dir(config_path: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_XDG_STATE_HOME).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("soong");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join(".local/state/soong");
    }
    match config_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Settings {
    /// Merges flags, environment and file.
    pub fn resolve(global: &GlobalArgs) -> anyhow::Result<Self> {
        let config_path = config_path(global)?;
        let loaded = ConfigFile::load(&config_path)?;
        let config_exists = loaded.is_some();
        let config = loaded.unwrap_or_default();
        let api_key = std::env::var(ENV_API_KEY)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(Secret::new)
            .or_else(|| config.lambda.api_key.clone());
        let api_url = std::env::var(ENV_API_URL)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| config.lambda.api_url.clone())
            .unwrap_or_else(|| lambda_cloud::DEFAULT_API_URL.to_owned());
        let wait_scale = std::env::var(ENV_WAIT_SCALE)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(1.0);
        Ok(Self {
            state_dir: default_state_dir(&config_path),
            config_path,
            config_exists,
            config,
            api_key,
            api_url,
            yes: global.yes,
            instance: global.instance.clone(),
            interactive: std::io::stdin().is_terminal(),
            no_pacing: std::env::var(ENV_NO_PACING).is_ok_and(|v| v == "1"),
            wait_scale,
        })
    }

    /// A note for messages about a missing setting: which file to put it in.
    fn where_to_set(&self) -> String {
        if self.config_exists {
            format!("in `{}`", self.config_path.display())
        } else {
            format!(
                "in a config file (none at `{}`)",
                self.config_path.display()
            )
        }
    }

    /// The API key, or an error that says where to put one.
    pub fn require_api_key(&self) -> anyhow::Result<lambda_cloud::ApiKey> {
        self.api_key
            .as_ref()
            .map(|key| lambda_cloud::ApiKey::new(key.expose()))
            .ok_or_else(|| {
                UserError::new("no Lambda API key is configured")
                    .hint(format!(
                        "run `soong configure`, or set `lambda.api_key` {} or `{ENV_API_KEY}` in the environment",
                        self.where_to_set()
                    ))
                    .status(crate::exit::ExitStatus::Auth)
                    .into()
            })
    }

    /// A setting the command cannot do without.
    pub fn require<'a>(&self, value: Option<&'a String>, key: &str) -> anyhow::Result<&'a str> {
        value
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                UserError::new(format!("`{key}` is not set"))
                    .hint(format!("set `{key}` {}", self.where_to_set()))
                    .into()
            })
    }

    /// The daemon token, required to talk to any daemon.
    pub fn require_token(&self) -> anyhow::Result<&Secret> {
        self.config.status_daemon.token.as_ref().ok_or_else(|| {
            UserError::new("`status_daemon.token` is not set")
                .hint(format!(
                    "run `soong configure` (it generates one), or set `status_daemon.token` {} to 32 random bytes, URL-safe base64",
                    self.where_to_set()
                ))
                .into()
        })
    }

    /// A Lambda client for these settings.
    pub fn client(&self) -> anyhow::Result<lambda_cloud::Client> {
        let key = self.require_api_key()?;
        let mut builder = lambda_cloud::Client::builder(self.api_url.clone(), key);
        if self.no_pacing {
            builder = builder.pacing(lambda_cloud::Pacing::none());
        }
        Ok(builder.build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("c.yaml"), text)
    }

    #[test]
    fn an_unknown_key_is_named_with_its_section() {
        let error = parse("lambda:\n  api_kye: x\n").unwrap_err();
        assert!(
            matches!(&error, ConfigError::UnknownKey { key, .. } if key == "lambda.api_kye"),
            "{error:?}"
        );
        let error = parse("lamda:\n  api_key: x\n").unwrap_err();
        assert!(
            matches!(&error, ConfigError::UnknownKey { key, .. } if key == "lamda"),
            "{error:?}"
        );
    }

    #[test]
    fn the_provision_section_parses_round_trips_and_names_unknown_keys() {
        let config = parse(
            "provision:\n  daemon_binary_url: https://example.com/d\n  daemon_binary_sha256: abc\n  hf_token: hf_x\n",
        )
        .unwrap();
        assert_eq!(
            config.provision.daemon_binary(),
            (Some("https://example.com/d"), Some("abc"))
        );
        assert_eq!(config.provision.hf_token.as_ref().unwrap().expose(), "hf_x");
        let text = serde_yaml::to_string(&config).unwrap();
        assert_eq!(parse(&text).unwrap(), config);
        // An empty section is not written back.
        let text = serde_yaml::to_string(&parse("lambda:\n  api_key: k\n").unwrap()).unwrap();
        assert!(!text.contains("provision"), "{text}");
        let error = parse("provision:\n  daemon_url: x\n").unwrap_err();
        assert!(
            matches!(&error, ConfigError::UnknownKey { key, .. } if key == "provision.daemon_url"),
            "{error:?}"
        );
    }

    #[test]
    fn an_empty_file_is_reported_as_empty() {
        assert!(matches!(
            parse("# nothing\n"),
            Err(ConfigError::Empty { .. })
        ));
        assert!(matches!(parse(""), Err(ConfigError::Empty { .. })));
    }

    #[test]
    fn empty_sections_mean_defaults() {
        let config = parse("lambda:\ndefaults:\n").unwrap();
        assert_eq!(config.defaults.lease_hours, 4);
        assert_eq!(config.status_daemon.access, Access::Ssh);
    }

    #[test]
    fn out_of_range_lease_is_an_invalid_value() {
        let error = parse("defaults:\n  lease_hours: 12\n").unwrap_err();
        assert!(
            matches!(&error, ConfigError::InvalidValue { key, .. } if key == "defaults.lease_hours"),
            "{error:?}"
        );
        let error = parse("status_daemon:\n  access: carrier-pigeon\n").unwrap_err();
        assert!(
            matches!(&error, ConfigError::InvalidValue { key, .. } if key == "status_daemon.access"),
            "{error:?}"
        );
    }

    #[test]
    fn saving_is_atomic_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("new/config.yaml");
        let mut config = parse("lambda:\n  api_key: k\n  ssh_key_name: me\n").unwrap();
        config.defaults.model = Some("llama-3.1-8b".into());
        config.save(&file).unwrap();
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(ConfigFile::load(&file).unwrap(), Some(config));
    }
}

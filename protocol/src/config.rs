//! The daemon's configuration file (DESIGN.md §3.2), read in two steps as
//! ntpd-rs does: [`DaemonConfig::parse`] refuses anything it does not know,
//! naming the file and the key; [`DaemonConfig::check`] then refuses
//! settings that parse but cannot hold (a lease longer than `max_lease`, a
//! zero duration, a secret given twice).
//!
//! The CLI's cloud-init template writes this file and the daemon reads it,
//! which is why the types live here.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::duration;
use crate::lease::{Policy, PolicyProblem};

/// Where the daemon listens by default: loopback only, reached through SSH.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// Lambda's API.
pub const DEFAULT_API_URL: &str = "https://cloud.lambda.ai/api/v1";
/// Where the state file lives by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/soong-daemon";
/// SGLang's port: the default activity port.
pub const DEFAULT_ACTIVITY_PORT: u16 = 8000;
/// How often activity is sampled by default.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// How often the heartbeat is pushed by default.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// How long `pre_terminate` may run by default.
pub const DEFAULT_PRE_TERMINATE_TIMEOUT: Duration = Duration::from_secs(60);

/// A secret read from the config file. Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// `/etc/soong/daemon.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address of the HTTP API (default `127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// File holding the API's bearer token (systemd credentials, 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The bearer token inline (tests); exactly one of `token`, `token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// How to reach the Lambda API.
    pub lambda: LambdaConfig,
    /// Which instance this is.
    #[serde(default)]
    pub instance: InstanceConfig,
    /// The cost-control durations.
    #[serde(default)]
    pub policy: Policy,
    /// What counts as activity.
    #[serde(default)]
    pub activity: ActivityConfig,
    /// Where `state.json` lives (default `/var/lib/soong-daemon`).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// A command run with `/bin/sh -c` before terminating (e.g. to sync
    /// results to the persistent filesystem); bounded by `pre_terminate_timeout`.
    #[serde(default)]
    pub pre_terminate: Option<String>,
    /// How long `pre_terminate` may run (default 60 s).
    #[serde(
        default = "default_pre_terminate_timeout",
        with = "crate::duration::human"
    )]
    pub pre_terminate_timeout: Duration,
    /// The watchdog worker, if one is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerConfig>,
}

/// The `lambda:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaConfig {
    /// Base URL of the API (default `https://cloud.lambda.ai/api/v1`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// File holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// The API key inline (tests); exactly one of `api_key`, `api_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
}

/// The `instance:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// The Lambda instance id; if absent, resolved from `name` through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The instance name the CLI launched with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the CLI's launch call succeeded (RFC 3339).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub launched_at: Option<OffsetDateTime>,
}

/// The `activity:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivityConfig {
    /// TCP ports whose connections count as activity (default `[8000]`).
    pub ports: Vec<u16>,
    /// Whether interactive terminals count (default `true`).
    pub terminals: bool,
    /// How often activity is sampled (default 2 s).
    #[serde(with = "crate::duration::human")]
    pub sample_interval: Duration,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        Self {
            ports: vec![DEFAULT_ACTIVITY_PORT],
            terminals: true,
            sample_interval: DEFAULT_SAMPLE_INTERVAL,
        }
    }
}

/// The `worker:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// The worker's base URL; the heartbeat goes to `<url>/heartbeat`.
    pub url: String,
    /// File holding this instance's heartbeat token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The token inline (tests); exactly one of `token`, `token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// How often to push the heartbeat (default 60 s).
    #[serde(
        default = "default_heartbeat_interval",
        with = "crate::duration::human"
    )]
    pub heartbeat_interval: Duration,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
}
fn default_api_url() -> String {
    DEFAULT_API_URL.to_owned()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}
fn default_pre_terminate_timeout() -> Duration {
    DEFAULT_PRE_TERMINATE_TIMEOUT
}
fn default_heartbeat_interval() -> Duration {
    DEFAULT_HEARTBEAT_INTERVAL
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Nothing but whitespace and comments.
    #[error("`{}` is empty; it needs at least a `lambda:` section and a token", .file.display())]
    Empty {
        /// The file.
        file: PathBuf,
    },
    /// Not YAML at all.
    #[error("`{}` is not valid YAML: {message}", .file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key this version does not know (often a typo).
    #[error("unknown key `{key}` in `{}`", .file.display())]
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// The dotted key (`policy.leese`).
        key: String,
    },
    /// A required key is absent.
    #[error("missing key `{key}` in `{}`", .file.display())]
    MissingKey {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
    },
    /// A key whose value has the wrong type or format.
    #[error("invalid value for `{key}` in `{}`: {message}", .file.display())]
    InvalidValue {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The file parses but describes something that cannot work.
    #[error("`{}` cannot be used: {}", .file.display(), join(.problems))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

fn join(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A setting that parses but makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    /// One of the policy durations.
    #[error(transparent)]
    Policy(#[from] PolicyProblem),
    /// A zero interval or timeout outside `policy`.
    #[error("`{key}` must be longer than zero")]
    ZeroDuration {
        /// The dotted key.
        key: &'static str,
    },
    /// Sampling less often than the idle timeout could not enforce it.
    #[error(
        "`activity.sample_interval` ({sample_interval}) is longer than `policy.idle_timeout` ({idle_timeout})"
    )]
    SampleIntervalTooLong {
        /// `activity.sample_interval`, formatted.
        sample_interval: String,
        /// `policy.idle_timeout`, formatted.
        idle_timeout: String,
    },
    /// Both the inline and the file form of a secret.
    #[error("set either `{key}` or `{file_key}`, not both")]
    SecretConflict {
        /// The inline key.
        key: &'static str,
        /// The file key.
        file_key: &'static str,
    },
    /// Neither form of a required secret.
    #[error("`{file_key}` (or `{key}`) is required")]
    SecretMissing {
        /// The inline key.
        key: &'static str,
        /// The file key.
        file_key: &'static str,
    },
    /// No way to know which instance to terminate.
    #[error("set `instance.id` or `instance.name`, so the daemon knows which instance it guards")]
    NoIdentity,
    /// Not an http(s) URL.
    #[error("`{key}` must be an http:// or https:// URL, not `{url}`")]
    InvalidUrl {
        /// The dotted key.
        key: &'static str,
        /// The value.
        url: String,
    },
    /// Port 0 cannot carry connections.
    #[error("`activity.ports` cannot contain port 0")]
    PortZero,
}

impl DaemonConfig {
    /// Step one: parse `text` (the contents of `file`), refusing unknown
    /// keys and malformed values with the key's dotted name.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let file = file.to_path_buf();
        // A file of only comments parses as null; say "empty", not "invalid type: unit".
        match serde_yaml::from_str::<serde_yaml::Value>(text) {
            Ok(serde_yaml::Value::Null) => return Err(ConfigError::Empty { file }),
            Ok(_) => {}
            Err(err) => {
                return Err(ConfigError::Syntax {
                    file,
                    message: err.to_string(),
                });
            }
        }
        let deserializer = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = err.path().to_string();
            let message = err.inner().to_string();
            classify(file, &path, message)
        })
    }

    /// Step two: every setting that parses but cannot hold.
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut problems: Vec<ConfigProblem> = self
            .policy
            .problems()
            .into_iter()
            .map(ConfigProblem::from)
            .collect();
        secret(
            &mut problems,
            self.token.is_some(),
            self.token_file.is_some(),
            "token",
            "token_file",
        );
        secret(
            &mut problems,
            self.lambda.api_key.is_some(),
            self.lambda.api_key_file.is_some(),
            "lambda.api_key",
            "lambda.api_key_file",
        );
        url(&mut problems, "lambda.api_url", &self.lambda.api_url);
        if self.instance.id.as_deref().is_none_or(str::is_empty)
            && self.instance.name.as_deref().is_none_or(str::is_empty)
        {
            problems.push(ConfigProblem::NoIdentity);
        }
        if self.activity.sample_interval.is_zero() {
            problems.push(ConfigProblem::ZeroDuration {
                key: "activity.sample_interval",
            });
        } else if self.activity.sample_interval > self.policy.idle_timeout
            && !self.policy.idle_timeout.is_zero()
        {
            problems.push(ConfigProblem::SampleIntervalTooLong {
                sample_interval: duration::format(self.activity.sample_interval),
                idle_timeout: duration::format(self.policy.idle_timeout),
            });
        }
        if self.activity.ports.contains(&0) {
            problems.push(ConfigProblem::PortZero);
        }
        if self.pre_terminate_timeout.is_zero() {
            problems.push(ConfigProblem::ZeroDuration {
                key: "pre_terminate_timeout",
            });
        }
        if let Some(worker) = &self.worker {
            url(&mut problems, "worker.url", &worker.url);
            secret(
                &mut problems,
                worker.token.is_some(),
                worker.token_file.is_some(),
                "worker.token",
                "worker.token_file",
            );
            if worker.heartbeat_interval.is_zero() {
                problems.push(ConfigProblem::ZeroDuration {
                    key: "worker.heartbeat_interval",
                });
            }
        }
        problems
    }

    /// Both steps: parse, then check.
    pub fn load(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let config = Self::parse(file, text)?;
        let problems = config.check();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                problems,
            })
        }
    }
}

fn secret(
    problems: &mut Vec<ConfigProblem>,
    inline: bool,
    file: bool,
    key: &'static str,
    file_key: &'static str,
) {
    match (inline, file) {
        (true, true) => problems.push(ConfigProblem::SecretConflict { key, file_key }),
        (false, false) => problems.push(ConfigProblem::SecretMissing { key, file_key }),
        _ => {}
    }
}

fn url(problems: &mut Vec<ConfigProblem>, key: &'static str, value: &str) {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    if rest.is_none_or(str::is_empty) {
        problems.push(ConfigProblem::InvalidUrl {
            key,
            url: value.to_owned(),
        });
    }
}

/// Turns serde's message into the variant that names the key.
fn classify(file: PathBuf, path: &str, message: String) -> ConfigError {
    // serde_path_to_error already ends the path with an unknown field's
    // name, but not with a missing one's.
    let join_key = |field: &str| {
        if path == field || path.ends_with(&format!(".{field}")) {
            path.to_owned()
        } else if path == "." || path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = quoted_after(&message, "unknown field `") {
        return ConfigError::UnknownKey {
            file,
            key: join_key(field),
        };
    }
    if let Some(field) = quoted_after(&message, "missing field `") {
        return ConfigError::MissingKey {
            file,
            key: join_key(field),
        };
    }
    ConfigError::InvalidValue {
        file,
        key: if path.is_empty() {
            ".".to_owned()
        } else {
            path.to_owned()
        },
        message,
    }
}

fn quoted_after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    let start = message.find(marker)? + marker.len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "token: t\nlambda:\n  api_key: k\ninstance:\n  name: soong-a\n";

    fn parse(text: &str) -> Result<DaemonConfig, ConfigError> {
        DaemonConfig::load(Path::new("/etc/soong/daemon.yaml"), text)
    }

    #[test]
    fn a_minimal_config_gets_every_default() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.lambda.api_url, DEFAULT_API_URL);
        assert_eq!(config.policy, Policy::default());
        assert_eq!(config.activity, ActivityConfig::default());
        assert_eq!(config.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert!(config.worker.is_none());
    }

    #[test]
    fn unknown_keys_are_named_with_their_section() {
        let err = parse(&format!("{MINIMAL}policy:\n  leese: 4h\n")).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "policy.leese"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "unknown key `policy.leese` in `/etc/soong/daemon.yaml`"
        );
        let err = parse(&format!("{MINIMAL}colour: blue\n")).unwrap_err();
        assert!(matches!(&err, ConfigError::UnknownKey { key, .. } if key == "colour"));
    }

    #[test]
    fn bad_durations_name_the_key() {
        let err = parse(&format!("{MINIMAL}policy:\n  lease: 4\n")).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, .. } if key == "policy.lease"),
            "{err:?}"
        );
        let err = parse(&format!("{MINIMAL}policy:\n  lease: forever\n")).unwrap_err();
        assert!(err.to_string().contains("`policy.lease`"), "{err}");
    }

    #[test]
    fn empty_and_comment_only_files_are_called_empty() {
        assert!(matches!(parse(""), Err(ConfigError::Empty { .. })));
        assert!(matches!(
            parse("# nothing\n"),
            Err(ConfigError::Empty { .. })
        ));
    }

    #[test]
    fn a_missing_lambda_section_is_named() {
        let err = parse("token: t\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingKey { key, .. } if key == "lambda"),
            "{err:?}"
        );
    }

    #[test]
    fn impossible_policies_are_refused_by_check() {
        let err = parse(&format!(
            "{MINIMAL}policy:\n  lease: 9h\n  max_lease: 10h\n"
        ))
        .unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid");
        };
        assert!(problems.iter().any(|p| matches!(
            p,
            ConfigProblem::Policy(PolicyProblem::MaxLeaseExceedsHardTimeout { .. })
        )));
    }

    #[test]
    fn zero_durations_are_refused() {
        let err = parse(&format!("{MINIMAL}policy:\n  idle_timeout: 0s\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("`policy.idle_timeout` must be longer than zero"),
            "{err}"
        );
    }

    #[test]
    fn secrets_must_come_from_exactly_one_place() {
        let err = parse("token: t\ntoken_file: /x\nlambda:\n  api_key: k\ninstance:\n  id: i\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("either `token` or `token_file`"),
            "{err}"
        );
        let err = parse("lambda:\n  api_key: k\ninstance:\n  id: i\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("`token_file` (or `token`) is required"),
            "{err}"
        );
    }

    #[test]
    fn an_instance_needs_an_id_or_a_name() {
        let err = parse("token: t\nlambda:\n  api_key: k\n").unwrap_err();
        assert!(
            err.to_string().contains("`instance.id` or `instance.name`"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let config = parse(MINIMAL).unwrap();
        assert!(!format!("{config:?}").contains("token: Some(Secret(\"t\"))"));
        assert!(format!("{config:?}").contains("[redacted]"));
    }

    #[test]
    fn a_config_written_by_serde_reads_back_identically() {
        // The CLI serialises this type into cloud-init; the daemon parses it.
        let mut config = parse(MINIMAL).unwrap();
        config.instance.launched_at = Some(time::macros::datetime!(2026-12-01 10:00:00.5 UTC));
        config.policy.idle_timeout = Duration::from_secs(90);
        config.pre_terminate = Some("sync".into());
        config.worker = Some(WorkerConfig {
            url: "https://w.example".into(),
            token_file: Some("/run/credentials/x/worker-token".into()),
            token: None,
            heartbeat_interval: Duration::from_secs(30),
        });
        let text = serde_yaml::to_string(&config).unwrap();
        assert_eq!(parse(&text).unwrap(), config, "{text}");
    }

    #[test]
    fn launched_at_is_rfc3339() {
        let config = parse(&format!("{MINIMAL}  launched_at: 2026-12-01T10:00:00Z\n")).unwrap();
        assert_eq!(
            config.instance.launched_at,
            Some(time::macros::datetime!(2026-12-01 10:00:00 UTC))
        );
    }
}

//! The cloud-init user-data sent at launch, rendered in one function.
//!
//! This is the minimal form: a `#cloud-config` that writes the daemon's
//! config and its secrets (0600, root), sets the SSH host key the CLI
//! generated (cloud-init's `ssh_keys:`, after deleting the image's keys) and
//! starts the daemon's unit. The full template of DESIGN.md §3.5
//! (installing the daemon binary from a pinned URL, SGLang and n8n units)
//! lives in `cloud-init/`; [`host_key_variables`] gives its host-key
//! variables, and it will replace the body of [`render`] and keep its
//! signature.
//!
//! The same module reads the user-data back ([`extract`]), which is what
//! `soong demo` does to run a real daemon for each simulated instance.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use soong_protocol::config::{DaemonConfig, Secret};

use crate::ssh::HostKey;

/// Where the daemon's config goes on the instance.
pub const DAEMON_CONFIG_PATH: &str = "/etc/soong/daemon.yaml";
/// The daemon API's bearer token on the instance.
pub const TOKEN_PATH: &str = "/etc/soong/token";
/// The Lambda API key on the instance (the daemon terminates itself with it).
pub const API_KEY_PATH: &str = "/etc/soong/lambda-api-key";
/// The instance's heartbeat token for the watchdog worker.
pub const WORKER_TOKEN_PATH: &str = "/etc/soong/worker-token";
/// The daemon's systemd unit.
pub const UNIT_PATH: &str = "/etc/systemd/system/soong-daemon.service";
/// What a masked secret looks like in `--dry-run` output.
pub const MASK: &str = "********";

const UNIT: &str = "[Unit]
Description=soong cost guard: idle timeout, lease and hard deadline
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart=/usr/local/bin/soong-daemon --config /etc/soong/daemon.yaml
Restart=always
RestartSec=2
WatchdogSec=30

[Install]
WantedBy=multi-user.target
";

#[derive(Debug, Serialize, Deserialize)]
struct CloudConfig {
    /// Remove the image's host keys before writing ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh_deletekeys: Option<bool>,
    /// Generate no other host key types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh_genkeytypes: Option<Vec<String>>,
    /// `ed25519_private` / `ed25519_public`: the pinned host key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh_keys: Option<std::collections::BTreeMap<String, String>>,
    write_files: Vec<WriteFile>,
    #[serde(default)]
    runcmd: Vec<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WriteFile {
    path: String,
    #[serde(default)]
    permissions: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    content: String,
}

/// The secrets that travel in the user-data.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The daemon API's bearer token.
    pub token: Secret,
    /// The Lambda API key.
    pub api_key: Secret,
    /// This instance's heartbeat token, when a worker is configured.
    pub worker_token: Option<Secret>,
    /// The instance's SSH host key pair (DESIGN.md §3.5).
    pub host_key: Option<HostKey>,
}

impl Secrets {
    /// Placeholders, for `--dry-run`; the public host key is no secret.
    pub fn masked(worker: bool, host_key: Option<&HostKey>) -> Self {
        Self {
            token: Secret::new(MASK),
            api_key: Secret::new(MASK),
            worker_token: worker.then(|| Secret::new(MASK)),
            host_key: host_key.map(|key| HostKey {
                private_openssh: Secret::new(MASK),
                public: key.public.clone(),
            }),
        }
    }
}

/// The host-key variables of `cloud-init/user-data.yaml.tmpl`
/// (`cloud-init/README.md`): `ssh_host_ed25519_private_b64` (standard
/// padded base64 of the OpenSSH private key) and `ssh_host_ed25519_public`.
pub fn host_key_variables(key: &HostKey) -> [(&'static str, Secret); 2] {
    use base64::Engine as _;
    [
        (
            "ssh_host_ed25519_private_b64",
            Secret::new(
                base64::engine::general_purpose::STANDARD.encode(key.private_openssh.expose()),
            ),
        ),
        ("ssh_host_ed25519_public", Secret::new(key.public.clone())),
    ]
}

/// The heartbeat token of an instance (DESIGN.md §3.4): lowercase hex of
/// HMAC-SHA256 keyed with the worker secret over the instance's name, so an
/// instance can only speak for itself.
pub fn worker_token(worker_secret: &Secret, instance_name: &str) -> Secret {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, worker_secret.expose().as_bytes());
    let tag = ring::hmac::sign(&key, instance_name.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in tag.as_ref() {
        let _ = write!(hex, "{byte:02x}");
    }
    Secret::new(hex)
}

/// Renders the user-data. `config` must name its secrets by file
/// ([`TOKEN_PATH`], [`API_KEY_PATH`]); the secrets themselves are written
/// to those files, never into the config.
pub fn render(config: &DaemonConfig, secrets: &Secrets) -> Result<String, serde_yaml::Error> {
    let private = |path: &str, content: String| WriteFile {
        path: path.to_owned(),
        permissions: Some("0600".to_owned()),
        owner: Some("root:root".to_owned()),
        content,
    };
    let mut write_files = vec![
        private(DAEMON_CONFIG_PATH, serde_yaml::to_string(config)?),
        private(TOKEN_PATH, secrets.token.expose().to_owned()),
        private(API_KEY_PATH, secrets.api_key.expose().to_owned()),
    ];
    if let Some(worker_token) = &secrets.worker_token {
        write_files.push(private(WORKER_TOKEN_PATH, worker_token.expose().to_owned()));
    }
    write_files.push(WriteFile {
        path: UNIT_PATH.to_owned(),
        permissions: Some("0644".to_owned()),
        owner: Some("root:root".to_owned()),
        content: UNIT.to_owned(),
    });
    let cloud = CloudConfig {
        ssh_deletekeys: secrets.host_key.as_ref().map(|_| true),
        ssh_genkeytypes: secrets.host_key.as_ref().map(|_| Vec::new()),
        ssh_keys: secrets.host_key.as_ref().map(|key| {
            [
                (
                    "ed25519_private".to_owned(),
                    key.private_openssh.expose().to_owned(),
                ),
                ("ed25519_public".to_owned(), key.public.clone()),
            ]
            .into_iter()
            .collect()
        }),
        write_files,
        runcmd: vec![
            vec!["systemctl".into(), "daemon-reload".into()],
            vec![
                "systemctl".into(),
                "enable".into(),
                "--now".into(),
                "soong-daemon.service".into(),
            ],
        ],
    };
    Ok(format!(
        "#cloud-config\n# Written by soong {} (the minimal form; see cloud-init/).\n{}",
        env!("CARGO_PKG_VERSION"),
        serde_yaml::to_string(&cloud)?
    ))
}

/// The daemon's config and secrets, read back from rendered user-data.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// The daemon config text.
    pub config: String,
    /// The daemon API's bearer token.
    pub token: Secret,
    /// The Lambda API key.
    pub api_key: Secret,
    /// The heartbeat token, when the user-data carries one.
    pub worker_token: Option<Secret>,
    /// The SSH host key's private half (OpenSSH PEM), when set.
    pub host_key: Option<Secret>,
}

/// Why user-data could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Not `#cloud-config`.
    #[error("the user-data is not `#cloud-config`")]
    NotCloudConfig,
    /// Not the shape [`render`] writes.
    #[error("the user-data cannot be read: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A file [`render`] always writes is absent.
    #[error("the user-data does not write `{0}`")]
    Missing(&'static str),
}

/// Reads back what [`render`] wrote.
pub fn extract(user_data: &str) -> Result<Extracted, ExtractError> {
    if !user_data.starts_with("#cloud-config") {
        return Err(ExtractError::NotCloudConfig);
    }
    let cloud: CloudConfig = serde_yaml::from_str(user_data)?;
    let file = |path: &'static str| {
        cloud
            .write_files
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.content.clone())
            .ok_or(ExtractError::Missing(path))
    };
    Ok(Extracted {
        config: file(DAEMON_CONFIG_PATH)?,
        token: Secret::new(file(TOKEN_PATH)?),
        api_key: Secret::new(file(API_KEY_PATH)?),
        worker_token: file(WORKER_TOKEN_PATH).ok().map(Secret::new),
        host_key: cloud
            .ssh_keys
            .as_ref()
            .and_then(|keys| keys.get("ed25519_private"))
            .map(|key| Secret::new(key.as_str())),
    })
}

/// Where the daemon listens for an access mode: loopback behind SSH, or
/// every interface when the CLI talks to it directly.
pub fn listen_address(direct: bool, port: u16) -> SocketAddr {
    if direct {
        SocketAddr::from(([0, 0, 0, 0], port))
    } else {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// The secret files the rendered config refers to.
pub fn secret_paths() -> (PathBuf, PathBuf) {
    (PathBuf::from(TOKEN_PATH), PathBuf::from(API_KEY_PATH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use soong_protocol::config::{InstanceConfig, LambdaConfig};

    fn config() -> DaemonConfig {
        let text = "lambda:\n  api_key_file: /etc/soong/lambda-api-key\ntoken_file: /etc/soong/token\ninstance:\n  name: soong-test-abcdef\n";
        let mut config = DaemonConfig::parse(std::path::Path::new("t.yaml"), text).unwrap();
        config.lambda = LambdaConfig {
            api_url: "https://cloud.lambda.ai/api/v1".into(),
            api_key_file: Some(API_KEY_PATH.into()),
            api_key: None,
        };
        config.instance = InstanceConfig {
            id: None,
            name: Some("soong-test-abcdef".into()),
            launched_at: None,
        };
        config
    }

    #[test]
    fn user_data_round_trips_and_the_daemon_config_checks() {
        let secrets = Secrets {
            token: Secret::new("tok"),
            api_key: Secret::new("key"),
            worker_token: None,
            host_key: Some(crate::ssh::generate_host_key("soong-test-abcdef").unwrap()),
        };
        let text = render(&config(), &secrets).unwrap();
        assert!(text.starts_with("#cloud-config\n"));
        let back = extract(&text).unwrap();
        assert_eq!(
            back.host_key.unwrap().expose(),
            secrets.host_key.as_ref().unwrap().private_openssh.expose()
        );
        assert!(text.contains("ssh_deletekeys: true"), "{text}");
        assert_eq!(back.token.expose(), "tok");
        assert_eq!(back.api_key.expose(), "key");
        let parsed =
            DaemonConfig::load(std::path::Path::new(DAEMON_CONFIG_PATH), &back.config).unwrap();
        assert_eq!(parsed, config());
    }

    #[test]
    fn the_worker_token_is_the_hex_hmac_of_the_name() {
        // RFC 4231, test case 2.
        let token = worker_token(&Secret::new("Jefe"), "what do ya want for nothing?");
        assert_eq!(
            token.expose(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn host_key_variables_match_the_cloud_init_templates_patterns() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../cloud-init/variables.json"
        ))
        .unwrap();
        let variables: serde_json::Value = serde_json::from_str(&text).unwrap();
        let pattern = |name: &str| {
            variables["variables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == name)
                .and_then(|v| v["pattern"].as_str())
                .unwrap_or_else(|| panic!("cloud-init/variables.json has no `{name}`"))
                .to_owned()
        };
        // The checks below implement these patterns; a changed pattern
        // needs a look at them.
        assert_eq!(
            pattern("ssh_host_ed25519_private_b64"),
            "^[A-Za-z0-9+/]+={0,2}$"
        );
        assert_eq!(
            pattern("ssh_host_ed25519_public"),
            "^ssh-ed25519 [A-Za-z0-9+/]+={0,2}( [A-Za-z0-9@._-]+)?$"
        );
        let base64 = |text: &str| {
            let body = text.trim_end_matches('=');
            !body.is_empty()
                && text.len() - body.len() <= 2
                && body
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        };
        let key = crate::ssh::generate_host_key("soong-llama-3.1-8b-1a2b3c").unwrap();
        let [(private_name, private), (public_name, public)] = host_key_variables(&key);
        assert_eq!(private_name, "ssh_host_ed25519_private_b64");
        assert!(base64(private.expose()), "{}", private.expose());
        assert_eq!(public_name, "ssh_host_ed25519_public");
        let mut parts = public.expose().split(' ');
        assert_eq!(parts.next(), Some("ssh-ed25519"));
        assert!(base64(parts.next().unwrap()));
        let comment = parts.next().unwrap();
        assert!(
            comment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@._-".contains(c)),
            "{comment}"
        );
        assert_eq!(parts.next(), None);
    }

    #[test]
    fn masked_user_data_holds_no_secret() {
        let key = crate::ssh::generate_host_key("soong-test-abcdef").unwrap();
        let text = render(&config(), &Secrets::masked(true, Some(&key))).unwrap();
        assert!(text.contains(WORKER_TOKEN_PATH));
        assert!(text.contains(MASK));
        assert!(!text.contains("tok\n"));
        assert!(!text.contains("OPENSSH PRIVATE KEY"), "{text}");
        assert!(text.contains(&key.public), "{text}");
    }
}

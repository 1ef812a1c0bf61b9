//! The cloud-init user-data sent at launch: `cloud-init/user-data.yaml.tmpl`
//! (DESIGN.md §3.5), compiled in and rendered here, with the variable
//! contract of `cloud-init/variables.json` (also compiled in): every
//! `{{name}}` is replaced verbatim by a value that must match its pattern,
//! `*_b64` values are standard padded base64, and no placeholder may be
//! left over.
//!
//! The same module reads the user-data back ([`extract`]), which is what
//! `soong demo` does to run a real daemon for each simulated instance, and
//! renders the tiny user-data of `--provision ansible` ([`render_host_key_only`]),
//! which only pins the host key.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;
use soong_protocol::config::{DaemonConfig, Secret};

use crate::ssh::HostKey;

/// The template, `cloud-init/user-data.yaml.tmpl`.
pub const TEMPLATE: &str = include_str!("../../cloud-init/user-data.yaml.tmpl");
/// Its variables, `cloud-init/variables.json`.
pub const VARIABLES_JSON: &str = include_str!("../../cloud-init/variables.json");

/// Where the daemon's config goes on the instance.
pub const DAEMON_CONFIG_PATH: &str = "/etc/soong/daemon.yaml";
/// Where systemd hands the unit its credentials (`LoadCredential=`).
pub const CREDENTIALS_DIR: &str = "/run/credentials/soong-daemon.service";
/// The daemon API's bearer token, as the daemon reads it.
pub const TOKEN_PATH: &str = "/run/credentials/soong-daemon.service/token";
/// The Lambda API key, as the daemon reads it.
pub const API_KEY_PATH: &str = "/run/credentials/soong-daemon.service/lambda-api-key";
/// The heartbeat token, as the daemon reads it.
pub const WORKER_TOKEN_PATH: &str = "/run/credentials/soong-daemon.service/worker-token";
/// The files the template writes the secrets to (then loaded as credentials).
const TOKEN_FILE: &str = "/etc/soong/credentials/token";
const API_KEY_FILE: &str = "/etc/soong/credentials/lambda-api-key";
const WORKER_TOKEN_FILE: &str = "/etc/soong/credentials/worker-token";
const HOST_KEY_FILE: &str = "/etc/ssh/ssh_host_ed25519_key";
/// What a masked secret looks like in `--dry-run` output.
pub const MASK: &str = "********";
/// What `--dry-run` shows for a daemon binary URL or sha256 not configured.
pub const UNSET: &str = "<unset>";

/// The SGLang release installed unless `provision.sglang_version` says
/// otherwise (the Ansible role's default too).
pub const DEFAULT_SGLANG_VERSION: &str = "0.4.6.post5";
/// The n8n release run unless `provision.n8n_version` says otherwise.
pub const DEFAULT_N8N_VERSION: &str = "1.94.1";

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
    pub host_key: HostKey,
    /// A Hugging Face token for gated models.
    pub hf_token: Option<Secret>,
}

/// The model SGLang serves.
#[derive(Debug, Clone)]
pub struct ModelVariables {
    /// Its id in soong's registry.
    pub id: String,
    /// The Hugging Face repository.
    pub hf_path: String,
    /// SGLang's `--quantization`, empty for none.
    pub quantization: String,
    /// SGLang's `--tp-size`.
    pub tensor_parallel_size: u32,
    /// SGLang's `--context-length`.
    pub context_length: u32,
    /// SGLang's `--served-model-name`.
    pub served_name: String,
}

/// The pinned `soong-daemon` binary.
#[derive(Debug, Clone)]
pub struct DaemonBinary {
    /// Where the instance downloads it.
    pub url: String,
    /// Its sha256.
    pub sha256: String,
}

/// Everything the template needs.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The daemon config; it names its secrets by file ([`TOKEN_PATH`],
    /// [`API_KEY_PATH`], [`WORKER_TOKEN_PATH`]).
    pub config: &'a DaemonConfig,
    /// The secrets.
    pub secrets: &'a Secrets,
    /// The daemon binary; `None` only for `--dry-run` ([`UNSET`] is shown).
    pub daemon_binary: Option<&'a DaemonBinary>,
    /// The login user SGLang and n8n run as.
    pub service_user: &'a str,
    /// The model.
    pub model: &'a ModelVariables,
    /// The pinned SGLang release.
    pub sglang_version: &'a str,
    /// The pinned n8n release.
    pub n8n_version: &'a str,
    /// The persistent filesystem's mount point.
    pub filesystem_mount_path: &'a str,
}

/// Why the user-data could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A value that breaks its variable's pattern (a secret's value is
    /// never shown).
    #[error("the user-data variable `{name}` must match `{pattern}`, and {shown} does not")]
    Invalid {
        /// The variable.
        name: String,
        /// Its pattern.
        pattern: String,
        /// The value, or `its value` for a secret.
        shown: String,
    },
    /// A placeholder of the template that nothing supplied.
    #[error("the user-data template still has `{{{{{0}}}}}` after rendering")]
    Leftover(String),
    /// A value supplied for a name the template does not know.
    #[error("`{0}` is not a variable of the user-data template")]
    Unknown(String),
    /// `variables.json` is malformed (a build problem).
    #[error("cloud-init/variables.json cannot be read: {0}")]
    Contract(String),
    /// No daemon binary to install.
    #[error("no soong-daemon binary to install")]
    NoDaemonBinary,
    /// The daemon config could not be written.
    #[error("cannot write the daemon config: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// One variable of the contract.
#[derive(Debug, Clone, Deserialize)]
pub struct Variable {
    /// Its name (`{{name}}` in the template).
    pub name: String,
    /// The regular expression its value must match.
    pub pattern: String,
    /// Whether its value is a secret.
    pub secret: bool,
}

/// The variables of `cloud-init/variables.json`.
pub fn contract() -> Result<Vec<Variable>, RenderError> {
    #[derive(Deserialize)]
    struct File {
        variables: Vec<Variable>,
    }
    serde_json::from_str::<File>(VARIABLES_JSON)
        .map(|file| file.variables)
        .map_err(|error| RenderError::Contract(error.to_string()))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The host-key variables of `cloud-init/user-data.yaml.tmpl`
/// (`cloud-init/README.md`): `ssh_host_ed25519_private_b64` (standard
/// padded base64 of the OpenSSH private key) and `ssh_host_ed25519_public`.
pub fn host_key_variables(key: &HostKey) -> [(&'static str, Secret); 2] {
    [
        (
            "ssh_host_ed25519_private_b64",
            Secret::new(b64(key.private_openssh.expose().as_bytes())),
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

/// Every variable's value, by name (secrets as they go into the
/// user-data: base64). `None` for the daemon binary when it is unset.
pub fn variables(
    inputs: &Inputs<'_>,
) -> Result<BTreeMap<&'static str, Option<Secret>>, RenderError> {
    let secrets = inputs.secrets;
    let optional = |secret: Option<&Secret>| {
        Secret::new(secret.map_or_else(String::new, |s| b64(s.expose().as_bytes())))
    };
    let plain = |text: &str| Some(Secret::new(text));
    let model = inputs.model;
    let mut values: BTreeMap<&'static str, Option<Secret>> = BTreeMap::new();
    values.insert(
        "daemon_config_b64",
        plain(&b64(serde_yaml::to_string(inputs.config)?.as_bytes())),
    );
    values.insert(
        "daemon_token_b64",
        plain(&b64(secrets.token.expose().as_bytes())),
    );
    values.insert(
        "lambda_api_key_b64",
        plain(&b64(secrets.api_key.expose().as_bytes())),
    );
    values.insert(
        "worker_token_b64",
        Some(optional(secrets.worker_token.as_ref())),
    );
    values.insert(
        "daemon_binary_url",
        inputs.daemon_binary.map(|b| Secret::new(b.url.as_str())),
    );
    values.insert(
        "daemon_binary_sha256",
        inputs.daemon_binary.map(|b| Secret::new(b.sha256.as_str())),
    );
    for (name, value) in host_key_variables(&secrets.host_key) {
        values.insert(name, Some(value));
    }
    values.insert("service_user", plain(inputs.service_user));
    values.insert("model_id", plain(&model.id));
    values.insert("model_hf_path", plain(&model.hf_path));
    values.insert("model_quantization", plain(&model.quantization));
    values.insert(
        "model_tensor_parallel_size",
        plain(&model.tensor_parallel_size.to_string()),
    );
    values.insert(
        "model_context_length",
        plain(&model.context_length.to_string()),
    );
    values.insert("model_served_name", plain(&model.served_name));
    values.insert("hf_token_b64", Some(optional(secrets.hf_token.as_ref())));
    values.insert("sglang_version", plain(inputs.sglang_version));
    values.insert("n8n_version", plain(inputs.n8n_version));
    values.insert("filesystem_mount_path", plain(inputs.filesystem_mount_path));
    Ok(values)
}

/// Checks `value` against the pattern of variable `name`.
pub fn check(name: &str, value: &Secret) -> Result<(), RenderError> {
    let contract = contract()?;
    let variable = contract
        .iter()
        .find(|v| v.name == name)
        .ok_or_else(|| RenderError::Unknown(name.to_owned()))?;
    check_variable(variable, value)
}

fn check_variable(variable: &Variable, value: &Secret) -> Result<(), RenderError> {
    let pattern = regex::Regex::new(&variable.pattern)
        .map_err(|error| RenderError::Contract(format!("`{}`: {error}", variable.name)))?;
    if pattern.is_match(value.expose()) {
        return Ok(());
    }
    Err(RenderError::Invalid {
        name: variable.name.clone(),
        pattern: variable.pattern.clone(),
        shown: if variable.secret {
            "its value (a secret, not shown)".to_owned()
        } else {
            format!("`{}`", value.expose())
        },
    })
}

/// Fills `template` in: every value is checked against its pattern (unset
/// ones are shown as [`UNSET`] only when `masked`), secrets replaced by
/// [`MASK`] when `masked`, and a placeholder left over is refused.
fn fill(
    template: &str,
    values: &BTreeMap<&'static str, Option<Secret>>,
    masked: bool,
) -> Result<String, RenderError> {
    let contract = contract()?;
    let mut text = template.to_owned();
    for (name, value) in values {
        let variable = contract
            .iter()
            .find(|v| v.name == *name)
            .ok_or_else(|| RenderError::Unknown((*name).to_owned()))?;
        let shown = match value {
            Some(value) => {
                check_variable(variable, value)?;
                if masked && variable.secret {
                    MASK.to_owned()
                } else {
                    value.expose().to_owned()
                }
            }
            None if masked => UNSET.to_owned(),
            None => return Err(RenderError::NoDaemonBinary),
        };
        text = text.replace(&format!("{{{{{name}}}}}"), &shown);
    }
    if let Some(start) = text.find("{{") {
        let rest = &text[start + 2..];
        let name = rest.split("}}").next().unwrap_or(rest);
        return Err(RenderError::Leftover(name.chars().take(64).collect()));
    }
    Ok(text)
}

/// Renders the user-data to launch with.
pub fn render(inputs: &Inputs<'_>) -> Result<String, RenderError> {
    fill(TEMPLATE, &variables(inputs)?, false)
}

/// The user-data as `--dry-run` shows it: secrets masked, an unset daemon
/// binary shown as [`UNSET`]; every other value checked all the same.
pub fn render_masked(inputs: &Inputs<'_>) -> Result<String, RenderError> {
    fill(TEMPLATE, &variables(inputs)?, true)
}

/// The part of the template that pins the host key, for
/// `--provision ansible`: the playbook installs the rest over SSH.
const HOST_KEY_ONLY: &str = r#"#cloud-config
# soong: --provision ansible. Only the pinned SSH host key (as in
# cloud-init/user-data.yaml.tmpl); the playbook in ansible/ installs
# soong-daemon, SGLang and n8n over SSH once the instance is up.
ssh_deletekeys: false
ssh_genkeytypes: [ed25519]
bootcmd:
  - [cloud-init-per, instance, soong-remove-image-host-keys, sh, -c, 'rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub']
write_files:
  - path: /etc/ssh/ssh_host_ed25519_key
    owner: root:root
    permissions: '0600'
    encoding: b64
    content: "{{ssh_host_ed25519_private_b64}}"
  - path: /etc/ssh/ssh_host_ed25519_key.pub
    owner: root:root
    permissions: '0644'
    content: |
      {{ssh_host_ed25519_public}}
"#;

/// The user-data of `--provision ansible`: the pinned host key only.
pub fn render_host_key_only(host_key: &HostKey, masked: bool) -> Result<String, RenderError> {
    let values = host_key_variables(host_key)
        .into_iter()
        .map(|(name, value)| (name, Some(value)))
        .collect();
    fill(HOST_KEY_ONLY, &values, masked)
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
    /// A `b64` file that is not base64, or not text.
    #[error("the user-data's `{0}` is not base64 of UTF-8 text")]
    Encoding(String),
}

#[derive(Debug, Deserialize)]
struct CloudConfig {
    #[serde(default)]
    write_files: Vec<WriteFile>,
}

#[derive(Debug, Deserialize)]
struct WriteFile {
    path: String,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    content: String,
}

impl WriteFile {
    fn text(&self) -> Result<String, ExtractError> {
        match self.encoding.as_deref() {
            Some("b64" | "base64") => base64::engine::general_purpose::STANDARD
                .decode(self.content.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| ExtractError::Encoding(self.path.clone())),
            _ => Ok(self.content.clone()),
        }
    }
}

/// Reads back what [`render`] wrote, from the template's `write_files`.
pub fn extract(user_data: &str) -> Result<Extracted, ExtractError> {
    if !user_data.starts_with("#cloud-config") {
        return Err(ExtractError::NotCloudConfig);
    }
    let cloud: CloudConfig = serde_yaml::from_str(user_data)?;
    let file = |path: &'static str| -> Result<Option<String>, ExtractError> {
        cloud
            .write_files
            .iter()
            .find(|f| f.path == path)
            .map(WriteFile::text)
            .transpose()
    };
    let required = |path: &'static str| file(path)?.ok_or(ExtractError::Missing(path));
    let non_empty = |text: Option<String>| text.filter(|t| !t.is_empty()).map(Secret::new);
    Ok(Extracted {
        config: required(DAEMON_CONFIG_PATH)?,
        token: Secret::new(required(TOKEN_FILE)?),
        api_key: Secret::new(required(API_KEY_FILE)?),
        worker_token: non_empty(file(WORKER_TOKEN_FILE)?),
        host_key: non_empty(file(HOST_KEY_FILE)?),
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
    use soong_protocol::config::{InstanceConfig, LambdaConfig, WorkerConfig};

    fn config(worker: bool) -> DaemonConfig {
        let text = "lambda: {}\ninstance: {}\n";
        let mut config = DaemonConfig::parse(std::path::Path::new("t.yaml"), text).unwrap();
        config.token_file = Some(TOKEN_PATH.into());
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
        config.worker = worker.then(|| WorkerConfig {
            url: "https://watchdog.example.workers.dev".into(),
            token_file: Some(WORKER_TOKEN_PATH.into()),
            token: None,
            heartbeat_interval: soong_protocol::config::DEFAULT_HEARTBEAT_INTERVAL,
        });
        config
    }

    fn secrets(worker: bool, hf: bool) -> Secrets {
        Secrets {
            token: Secret::new("tok-0123456789"),
            api_key: Secret::new("secret_lambda-key-9876"),
            worker_token: worker.then(|| Secret::new("worker-tok-5555")),
            host_key: crate::ssh::generate_host_key("soong-test-abcdef").unwrap(),
            hf_token: hf.then(|| Secret::new("hf_gatedtoken4242")),
        }
    }

    fn model() -> ModelVariables {
        ModelVariables {
            id: "llama-3.1-8b".into(),
            hf_path: "meta-llama/Llama-3.1-8B-Instruct".into(),
            quantization: String::new(),
            tensor_parallel_size: 1,
            context_length: 32768,
            served_name: "llama-3.1-8b".into(),
        }
    }

    fn binary() -> DaemonBinary {
        DaemonBinary {
            url: "https://example.com/soong-daemon".into(),
            sha256: "ab".repeat(32),
        }
    }

    fn inputs<'a>(
        config: &'a DaemonConfig,
        secrets: &'a Secrets,
        model: &'a ModelVariables,
        binary: Option<&'a DaemonBinary>,
    ) -> Inputs<'a> {
        Inputs {
            config,
            secrets,
            daemon_binary: binary,
            service_user: "ubuntu",
            model,
            sglang_version: DEFAULT_SGLANG_VERSION,
            n8n_version: DEFAULT_N8N_VERSION,
            filesystem_mount_path: "/lambda/nfs/coding-stack",
        }
    }

    #[test]
    fn the_template_renders_parses_and_round_trips() {
        for (worker, hf) in [(false, false), (true, true)] {
            let config = config(worker);
            let secrets = secrets(worker, hf);
            let model = model();
            let binary = binary();
            let text = render(&inputs(&config, &secrets, &model, Some(&binary))).unwrap();
            assert!(text.starts_with("#cloud-config\n"));
            assert!(!text.contains("{{"));
            let _: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            let back = extract(&text).unwrap();
            assert_eq!(back.token.expose(), "tok-0123456789");
            assert_eq!(back.api_key.expose(), "secret_lambda-key-9876");
            assert_eq!(
                back.worker_token.as_ref().map(Secret::expose),
                worker.then_some("worker-tok-5555")
            );
            assert_eq!(
                back.host_key.unwrap().expose(),
                secrets.host_key.private_openssh.expose()
            );
            let parsed =
                DaemonConfig::parse(std::path::Path::new(DAEMON_CONFIG_PATH), &back.config)
                    .unwrap();
            assert!(parsed.check().is_empty(), "{:?}", parsed.check());
            assert_eq!(parsed, config);
            for secret in [
                "tok-0123456789",
                "secret_lambda-key-9876",
                "worker-tok-5555",
                "hf_gatedtoken4242",
                "OPENSSH PRIVATE KEY",
            ] {
                assert!(!text.contains(secret), "{secret} in clear text");
            }
            assert!(text.contains(&secrets.host_key.public));
        }
    }

    #[test]
    fn every_variable_is_supplied_and_matches_its_pattern() {
        let config = config(true);
        let secrets = secrets(true, true);
        let model = model();
        let binary = binary();
        let values = variables(&inputs(&config, &secrets, &model, Some(&binary))).unwrap();
        let contract = contract().unwrap();
        let supplied: Vec<&str> = values.keys().copied().collect();
        let mut expected: Vec<&str> = contract.iter().map(|v| v.name.as_str()).collect();
        expected.sort_unstable();
        assert_eq!(supplied, expected);
        for variable in &contract {
            let value = values[variable.name.as_str()].as_ref().unwrap();
            check_variable(variable, value).unwrap();
            assert!(TEMPLATE.contains(&format!("{{{{{}}}}}", variable.name)));
        }
    }

    #[test]
    fn a_value_breaking_its_pattern_is_refused_without_showing_secrets() {
        let config = config(false);
        let secrets = secrets(false, false);
        let mut model = model();
        model.hf_path = "not a path; rm -rf /".into();
        let binary = binary();
        let error = render(&inputs(&config, &secrets, &model, Some(&binary))).unwrap_err();
        assert!(error.to_string().contains("`model_hf_path`"), "{error}");
        let model = self::model();
        let bad = DaemonBinary {
            url: "ftp://x".into(),
            sha256: "ab".repeat(32),
        };
        let error = render(&inputs(&config, &secrets, &model, Some(&bad))).unwrap_err();
        assert!(error.to_string().contains("`daemon_binary_url`"), "{error}");
        let error = check("hf_token_b64", &Secret::new("not base64!")).unwrap_err();
        assert!(error.to_string().contains("`hf_token_b64`"));
        assert!(!error.to_string().contains("not base64!"), "{error}");
        assert!(matches!(
            render(&inputs(&config, &secrets, &model, None)),
            Err(RenderError::NoDaemonBinary)
        ));
    }

    #[test]
    fn a_leftover_placeholder_is_refused() {
        let values = BTreeMap::new();
        assert!(matches!(
            fill("#cloud-config\nx: {{nobody}}\n", &values, false),
            Err(RenderError::Leftover(name)) if name == "nobody"
        ));
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
    fn masked_user_data_holds_no_secret_and_shows_an_unset_binary() {
        let config = config(true);
        let secrets = secrets(true, true);
        let model = model();
        let text = render_masked(&inputs(&config, &secrets, &model, None)).unwrap();
        assert!(text.contains(MASK));
        assert!(text.contains(&format!("url={UNSET}")), "{text}");
        for secret in [
            &secrets.token,
            &secrets.api_key,
            &secrets.hf_token.clone().unwrap(),
        ] {
            assert!(!text.contains(&b64(secret.expose().as_bytes())));
            assert!(!text.contains(secret.expose()));
        }
        assert!(text.contains(&secrets.host_key.public), "{text}");
    }

    #[test]
    fn every_built_in_model_renders_under_a_megabyte() {
        let config = config(true);
        let secrets = secrets(true, true);
        let binary = binary();
        for m in crate::models::builtin_models() {
            let model = ModelVariables {
                id: m.id.clone(),
                hf_path: m.hf_path.clone(),
                quantization: m.quantization.sglang_flag().unwrap_or_default().to_owned(),
                tensor_parallel_size: 8,
                context_length: m.context_length,
                served_name: m.id.clone(),
            };
            let text = render(&inputs(&config, &secrets, &model, Some(&binary))).unwrap();
            assert!(text.len() < 1024 * 1024, "{}: {} bytes", m.id, text.len());
        }
    }

    #[test]
    fn the_host_key_only_user_data_pins_the_key() {
        let key = crate::ssh::generate_host_key("soong-test-abcdef").unwrap();
        let text = render_host_key_only(&key, false).unwrap();
        let _: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert!(text.contains(&key.public));
        assert!(!text.contains("soong-daemon.service"));
        let masked = render_host_key_only(&key, true).unwrap();
        assert!(masked.contains(MASK) && !masked.contains("OPENSSH"));
    }
}

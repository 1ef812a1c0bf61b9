//! `soong start --provision ansible`: after boot, `ansible-playbook` from
//! soong's `ansible/` (found through `SOONG_ANSIBLE_DIR`, else next to the
//! executable) provisions the instance over SSH, with the host key pinned
//! exactly as `soong ssh` pins it. Every variable, secrets included, goes
//! in a 0600 temporary vars file (`-e @file`), deleted afterwards: never a
//! secret on a command line or in the environment.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::exit::UserError;
use crate::output::Printer;
use crate::settings::{Access, Settings};
use crate::ssh;
use crate::user_data::{DaemonBinary, Inputs};

/// `SOONG_ANSIBLE_DIR`: the directory holding `playbook.yml` (soong's `ansible/`).
pub const ENV_ANSIBLE_DIR: &str = "SOONG_ANSIBLE_DIR";
/// The program run.
pub const ANSIBLE_PLAYBOOK: &str = "ansible-playbook";

/// The playbook's variables (DESIGN.md §3.5, `ansible/README.md`), secrets
/// included: only ever written to a 0600 file.
pub struct Vars(Value);

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vars(…)")
    }
}

impl Vars {
    /// The variables for the roles, from the same inputs as the user-data.
    pub fn new(
        settings: &Settings,
        inputs: &Inputs<'_>,
        binary: &DaemonBinary,
    ) -> anyhow::Result<Self> {
        let daemon = serde_json::to_value(inputs.config)
            .context("cannot write the daemon config's values")?;
        let secrets = inputs.secrets;
        let expose = |secret: Option<&soong_protocol::config::Secret>| {
            secret.map_or_else(String::new, |s| s.expose().to_owned())
        };
        let model = inputs.model;
        let config = &settings.config;
        Ok(Self(json!({
            "soong_daemon_binary_url": binary.url,
            "soong_daemon_binary_sha256": binary.sha256,
            "soong_daemon_token": secrets.token.expose(),
            "soong_daemon_lambda_api_key": secrets.api_key.expose(),
            "soong_daemon_worker_token": expose(secrets.worker_token.as_ref()),
            "soong_daemon_listen": daemon["listen"],
            "soong_daemon_lambda_api_url": daemon["lambda"]["api_url"],
            "soong_daemon_instance_name": daemon["instance"]["name"].as_str().unwrap_or_default(),
            "soong_daemon_launched_at": daemon["instance"]["launched_at"].as_str().unwrap_or_default(),
            "soong_daemon_idle_timeout": daemon["policy"]["idle_timeout"],
            "soong_daemon_lease": daemon["policy"]["lease"],
            "soong_daemon_max_lease": daemon["policy"]["max_lease"],
            "soong_daemon_hard_timeout": daemon["policy"]["hard_timeout"],
            "soong_daemon_activity_ports": daemon["activity"]["ports"],
            "soong_daemon_activity_terminals": daemon["activity"]["terminals"],
            "soong_daemon_sample_interval": daemon["activity"]["sample_interval"],
            "soong_daemon_worker_url": daemon["worker"]["url"].as_str().unwrap_or_default(),
            "soong_daemon_heartbeat_interval": daemon["worker"]["heartbeat_interval"].as_str().unwrap_or("60s"),
            "sglang_version": inputs.sglang_version,
            "sglang_model_id": model.id,
            "sglang_model_hf_path": model.hf_path,
            "sglang_model_served_name": model.served_name,
            "sglang_model_quantization": model.quantization,
            "sglang_model_tensor_parallel_size": model.tensor_parallel_size,
            "sglang_model_context_length": model.context_length,
            "sglang_hf_token": expose(secrets.hf_token.as_ref()),
            "sglang_user": inputs.service_user,
            "n8n_version": inputs.n8n_version,
            "n8n_user": inputs.service_user,
            "soong_filesystem_mount_path": inputs.filesystem_mount_path,
            "firewall_ssh_port": config.ssh.port,
            "firewall_allow_daemon_port": config.status_daemon.access == Access::Direct,
            "firewall_daemon_port": config.status_daemon.port,
        })))
    }
}

/// A playbook found on this machine.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// The directory holding `playbook.yml` and `ansible.cfg`.
    pub dir: PathBuf,
}

impl Playbook {
    /// `SOONG_ANSIBLE_DIR`, else an `ansible/` next to the executable or
    /// in one of its parents (a checkout's `target/…/soong`), else
    /// `<prefix>/share/soong/ansible`; and `ansible-playbook` on `PATH`.
    pub fn find() -> anyhow::Result<Self> {
        let has_playbook = |dir: &Path| dir.join("playbook.yml").is_file();
        let dir = if let Some(dir) = std::env::var_os(ENV_ANSIBLE_DIR).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            if !has_playbook(&dir) {
                return Err(UserError::new(format!(
                    "`{ENV_ANSIBLE_DIR}` is `{}`, which has no `playbook.yml`",
                    dir.display()
                ))
                .hint("point it at the `ansible/` directory of a soong checkout")
                .into());
            }
            dir
        } else {
            let exe = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.canonicalize().ok());
            exe.iter()
                .flat_map(|exe| exe.ancestors().skip(1))
                .flat_map(|dir| [dir.join("ansible"), dir.join("share/soong/ansible")])
                .find(|dir| has_playbook(dir))
                .ok_or_else(|| {
                    UserError::new("cannot find soong's Ansible playbook (`ansible/playbook.yml`) next to the soong executable")
                        .hint(format!(
                            "set `{ENV_ANSIBLE_DIR}` to the `ansible/` directory of a soong checkout, or use `--provision cloud-init`; nothing was launched"
                        ))
                })?
        };
        if find_in_path(ANSIBLE_PLAYBOOK).is_none() {
            return Err(UserError::new(format!("`{ANSIBLE_PLAYBOOK}` is not on PATH"))
                .hint(format!(
                    "install the pinned Ansible (`{}/tests/requirements.txt`, see ansible/README.md), or use `--provision cloud-init`; nothing was launched",
                    dir.display()
                ))
                .into());
        }
        Ok(Self { dir })
    }

    /// Runs the playbook against `instance`; an error says why it failed.
    pub async fn run(
        &self,
        printer: &Printer,
        settings: &Settings,
        instance: &lambda_cloud::Instance,
        vars: &Vars,
    ) -> anyhow::Result<()> {
        let target = ssh::Target::for_instance(settings, instance)
            .context("cannot pin the instance's address for Ansible")?;
        let ssh_args = ssh_args(&target);
        let mut all = vars.0.clone();
        all["ansible_user"] = json!(target.user);
        all["ansible_port"] = json!(target.port);
        all["ansible_ssh_private_key_file"] = json!(target.key_path.display().to_string());
        all["ansible_ssh_common_args"] = json!(ssh_args);
        // tempfile creates it 0600; it goes when dropped, whatever happens.
        let mut file = tempfile::Builder::new()
            .prefix("soong-ansible-vars-")
            .suffix(".json")
            .tempfile()
            .context("cannot create the playbook's vars file")?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .context("cannot make the vars file private")?;
        }
        file.write_all(serde_json::to_string(&all)?.as_bytes())
            .and_then(|()| file.flush())
            .context("cannot write the playbook's vars file")?;
        let mut at_file = OsString::from("@");
        at_file.push(file.path());
        let playbook = self.dir.join("playbook.yml");
        printer.info(format!(
            "Provisioning with Ansible: `{ANSIBLE_PLAYBOOK}` {} against {}",
            playbook.display(),
            target.destination()
        ));
        // Ansible's output is progress, not data: it goes to stderr.
        let stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot pass stderr on")?;
        let status = tokio::process::Command::new(ANSIBLE_PLAYBOOK)
            .arg("-i")
            .arg(format!("{},", target.ip))
            .arg("-u")
            .arg(&target.user)
            .arg("--private-key")
            .arg(&target.key_path)
            .arg("-e")
            .arg(&at_file)
            .arg(&playbook)
            .current_dir(&self.dir)
            .env("ANSIBLE_CONFIG", self.dir.join("ansible.cfg"))
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_SSH_ARGS", &ssh_args)
            .env("ANSIBLE_NOCOLOR", "1")
            // Secrets soong may have been given through its environment
            // stay out of the playbook's (and its ssh's).
            .env_remove(crate::settings::ENV_API_KEY)
            .env_remove("CLOUDFLARE_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::from(stderr))
            .kill_on_drop(true)
            .status()
            .await
            .with_context(|| format!("cannot run `{ANSIBLE_PLAYBOOK}`"))?;
        drop(file);
        if status.success() {
            printer.info("The playbook ran.");
            Ok(())
        } else {
            anyhow::bail!(
                "`{ANSIBLE_PLAYBOOK}` failed ({status}), so the instance may have no soong daemon"
            )
        }
    }
}

/// The ssh options Ansible uses: soong's pinned `known_hosts` only, strict.
fn ssh_args(target: &ssh::Target) -> String {
    let options = target.options();
    let mut words: Vec<String> = Vec::new();
    for pair in options.chunks(2) {
        if let [flag, value] = pair {
            let value = value.to_string_lossy();
            // Ansible sets the user, key and port itself.
            if ["User=", "Port=", "IdentityFile="]
                .iter()
                .any(|p| value.starts_with(p))
            {
                continue;
            }
            words.push(flag.to_string_lossy().into_owned());
            words.push(value.into_owned());
        }
    }
    words.join(" ")
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user_data::{DEFAULT_N8N_VERSION, DEFAULT_SGLANG_VERSION, ModelVariables, Secrets};
    use soong_protocol::config::{DaemonConfig, Secret};

    fn settings() -> Settings {
        Settings {
            config_path: PathBuf::from("/nonexistent/config.yaml"),
            config_exists: false,
            config: crate::settings::ConfigFile::default(),
            api_key: None,
            api_url: "https://cloud.lambda.ai/api/v1".to_owned(),
            yes: true,
            instance: None,
            interactive: false,
            no_pacing: true,
            wait_scale: 1.0,
            state_dir: PathBuf::from("/nonexistent/state"),
        }
    }

    fn vars(worker: bool) -> Vars {
        let mut text = String::from(
            "lambda:\n  api_key_file: /run/credentials/soong-daemon.service/lambda-api-key\ntoken_file: /run/credentials/soong-daemon.service/token\ninstance:\n  name: soong-test-abcdef\n  launched_at: 2026-12-01T11:27:06.199068268Z\n",
        );
        if worker {
            text.push_str("worker:\n  url: https://w.example.workers.dev\n  token_file: /run/credentials/soong-daemon.service/worker-token\n");
        }
        let config = DaemonConfig::parse(Path::new("t.yaml"), &text).unwrap();
        let secrets = Secrets {
            token: Secret::new("tok"),
            api_key: Secret::new("key"),
            worker_token: worker.then(|| Secret::new("wtok")),
            host_key: crate::ssh::generate_host_key("soong-test-abcdef").unwrap(),
            hf_token: None,
        };
        let model = ModelVariables {
            id: "llama-3.1-8b".into(),
            hf_path: "meta-llama/Llama-3.1-8B-Instruct".into(),
            quantization: String::new(),
            tensor_parallel_size: 2,
            context_length: 32768,
            served_name: "llama-3.1-8b".into(),
        };
        let binary = DaemonBinary {
            url: "https://example.com/soong-daemon".into(),
            sha256: "ab".repeat(32),
        };
        let inputs = Inputs {
            config: &config,
            secrets: &secrets,
            daemon_binary: Some(&binary),
            service_user: "ubuntu",
            model: &model,
            sglang_version: DEFAULT_SGLANG_VERSION,
            n8n_version: DEFAULT_N8N_VERSION,
            filesystem_mount_path: "/lambda/nfs/coding-stack",
        };
        Vars::new(&settings(), &inputs, &binary).unwrap()
    }

    /// Every variable soong passes is declared by a role's
    /// `meta/argument_specs.yml` with a matching type (or, for the shared
    /// mount path, read by the roles' defaults), and the durations match
    /// the role's duration pattern.
    #[test]
    fn the_variables_match_the_roles_argument_specs() {
        let roles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible/roles");
        let mut specs = std::collections::BTreeMap::<String, String>::new();
        let mut defaults = String::new();
        for role in ["common", "firewall", "soong_daemon", "sglang", "n8n"] {
            let text =
                std::fs::read_to_string(roles.join(role).join("meta/argument_specs.yml")).unwrap();
            let spec: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            for (name, option) in spec["argument_specs"]["main"]["options"]
                .as_mapping()
                .unwrap()
            {
                specs.insert(
                    name.as_str().unwrap().to_owned(),
                    option["type"].as_str().unwrap_or("str").to_owned(),
                );
            }
            defaults.push_str(
                &std::fs::read_to_string(roles.join(role).join("defaults/main.yml")).unwrap(),
            );
        }
        let duration = regex::Regex::new(r"^([1-9][0-9]* ?(ms|s|m|h|d) ?)+$").unwrap();
        for worker in [false, true] {
            let Vars(vars) = vars(worker);
            for (name, value) in vars.as_object().unwrap() {
                let Some(kind) = specs.get(name) else {
                    assert!(
                        defaults.contains(name.as_str()),
                        "`{name}` is neither in a role's argument spec nor read by its defaults"
                    );
                    continue;
                };
                let ok = match kind.as_str() {
                    "str" | "path" => value.is_string(),
                    "int" => value.is_u64(),
                    "bool" => value.is_boolean(),
                    "list" => value.is_array(),
                    other => panic!("unexpected spec type {other}"),
                };
                assert!(ok, "`{name}` is {value}, the spec says {kind}");
            }
            for name in [
                "soong_daemon_idle_timeout",
                "soong_daemon_lease",
                "soong_daemon_max_lease",
                "soong_daemon_hard_timeout",
                "soong_daemon_sample_interval",
                "soong_daemon_heartbeat_interval",
            ] {
                let value = vars[name].as_str().unwrap();
                assert!(duration.is_match(value), "{name}: {value}");
            }
            assert_eq!(vars["soong_daemon_instance_name"], "soong-test-abcdef");
            assert_eq!(vars["sglang_model_tensor_parallel_size"], 2);
            assert_eq!(
                vars["soong_daemon_worker_url"].as_str().unwrap().is_empty(),
                !worker
            );
        }
    }

    #[test]
    fn ansibles_ssh_arguments_trust_only_the_pinned_key() {
        let target = ssh::Target {
            name: "soong-x".into(),
            user: "ubuntu".into(),
            ip: "203.0.113.9".into(),
            port: 2222,
            key_path: PathBuf::from("/home/me/.ssh/id_ed25519"),
            known_hosts: PathBuf::from("/home/me/.local/state/soong/known_hosts"),
        };
        let args = ssh_args(&target);
        assert!(args.contains("-o StrictHostKeyChecking=yes"), "{args}");
        assert!(
            args.contains("-o UserKnownHostsFile=/home/me/.local/state/soong/known_hosts"),
            "{args}"
        );
        assert!(args.contains("GlobalKnownHostsFile=/dev/null"), "{args}");
        assert!(!args.contains("Port=") && !args.contains("User="), "{args}");
    }
}

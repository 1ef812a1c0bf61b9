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

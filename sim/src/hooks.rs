//! The binary's launch hook: run a command "on" each instance while it lives.
//!
//! When an instance boots, the command runs with the instance's identity in
//! its environment and its user-data in a private file; when the instance is
//! terminated, the command's whole process group is stopped, as a real VM's
//! processes would be. This is how the demo runs one real `soong-daemon` per
//! simulated instance.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::api::lock;
use crate::{LaunchHook, SimEvent};

/// Runs a shell command for each booted instance.
pub struct CommandHook {
    command: String,
    api_url: OnceLock<String>,
    dir: PathBuf,
    children: Mutex<HashMap<String, Child>>,
}

impl CommandHook {
    /// A hook that runs `command` with `sh -c`, keeping each instance's
    /// user-data in a file under `dir` (created 0700).
    ///
    /// The command sees `SIM_INSTANCE_ID`, `SIM_INSTANCE_NAME`,
    /// `SIM_INSTANCE_IP`, `SIM_INSTANCE_STATUS`, `SIM_USER_DATA_FILE` and
    /// `SIM_API_URL`.
    pub fn new(command: impl Into<String>, dir: PathBuf) -> std::io::Result<Arc<Self>> {
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        Ok(Arc::new(Self {
            command: command.into(),
            api_url: OnceLock::new(),
            dir,
            children: Mutex::new(HashMap::new()),
        }))
    }

    /// Tells the hook where the API is, once the simulator has bound its port.
    pub fn set_api_url(&self, url: String) {
        let _ = self.api_url.set(url);
    }

    /// The hook to put in [`crate::SimConfig`].
    pub fn as_launch_hook(self: &Arc<Self>) -> LaunchHook {
        let this = Arc::clone(self);
        Arc::new(move |event| this.handle(event))
    }

    fn handle(&self, event: SimEvent) {
        match event {
            SimEvent::Booted(instance) => {
                let user_data_file = self.dir.join(format!("{}.user-data", instance.id));
                // The user-data holds the daemon's secrets: owner-only, like
                // cloud-init's copy on a real instance.
                let written = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&user_data_file)
                    .and_then(|mut file| {
                        file.write_all(instance.user_data.unwrap_or_default().as_bytes())
                    });
                if let Err(error) = written {
                    log::error!("instance {}: cannot write user-data: {error}", instance.id);
                    return;
                }
                let spawned = Command::new("sh")
                    .arg("-c")
                    .arg(&self.command)
                    .env("SIM_INSTANCE_ID", &instance.id)
                    .env("SIM_INSTANCE_NAME", instance.name.unwrap_or_default())
                    .env("SIM_INSTANCE_IP", instance.ip.to_string())
                    .env("SIM_INSTANCE_STATUS", instance.status.as_str())
                    .env("SIM_USER_DATA_FILE", &user_data_file)
                    .env(
                        "SIM_API_URL",
                        self.api_url.get().cloned().unwrap_or_default(),
                    )
                    // Its own process group, so termination stops everything it started.
                    .process_group(0)
                    .spawn();
                match spawned {
                    Ok(child) => {
                        log::info!(
                            "instance {}: hook started (pid {})",
                            instance.id,
                            child.id()
                        );
                        lock(&self.children).insert(instance.id, child);
                    }
                    Err(error) => {
                        log::error!("instance {}: cannot start hook: {error}", instance.id);
                    }
                }
            }
            SimEvent::Terminated { id } => {
                let child = lock(&self.children).remove(&id);
                if let Some(child) = child {
                    log::info!("instance {id}: terminated, stopping its processes");
                    stop_group(child);
                }
                let _ = fs::remove_file(self.dir.join(format!("{id}.user-data")));
            }
        }
    }

    /// Stops every instance's processes (the simulator is going away).
    pub fn stop_all(&self) {
        let children: Vec<Child> = lock(&self.children).drain().map(|(_, c)| c).collect();
        for child in children {
            stop_group(child);
        }
    }
}

impl Drop for CommandHook {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// SIGTERM to the group, SIGKILL after a grace period, and reap, off the
/// caller's thread so the simulator's tick never blocks on it.
fn stop_group(mut child: Child) {
    let Ok(raw) = i32::try_from(child.id()) else {
        let _ = child.kill();
        return;
    };
    let group = Pid::from_raw(raw);
    let _ = killpg(group, Signal::SIGTERM);
    std::thread::spawn(move || {
        for _ in 0..50 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                let _ = killpg(group, Signal::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait();
    });
}

//! soong tunnels: one long-lived `ssh -N` per instance forwarding local
//! ports to the instance's SGLang (8000), n8n (5678) and daemon
//! (`status_daemon.port`), tracked exactly.
//!
//! A tunnel's record (`<state dir>/tunnels/<instance id>.json`) holds the
//! PID of the ssh soong started and that process's start time from
//! `/proc/<pid>/stat`. A PID alone is not an identity: once the ssh exits,
//! the kernel may give its number to any other process. So before a
//! tunnel is used or signalled, the process with that PID must still have
//! that start time (and be an ssh); otherwise the record is stale, is
//! removed, and never blocks a new tunnel.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// One forwarded port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    /// `sglang`, `n8n` or `status`.
    pub name: String,
    /// The local port (127.0.0.1).
    pub local: u16,
    /// The instance's port (127.0.0.1 there).
    pub remote: u16,
}

/// What `tunnel start` wrote down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The instance the tunnel goes to.
    pub instance_id: String,
    /// Its name.
    pub instance_name: String,
    /// The ssh process.
    pub pid: u32,
    /// Its start time, in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// When the tunnel was started (unix seconds).
    pub started_at: i64,
    /// The forwards.
    pub forwards: Vec<PortForward>,
}

/// Where tunnel records live.
pub fn records_dir(settings: &Settings) -> PathBuf {
    crate::settings::state_dir(settings).join("tunnels")
}

fn record_path(settings: &Settings, instance_id: &str) -> PathBuf {
    // Instance ids are hex from Lambda; keep anything else out of the path.
    let safe: String = instance_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    records_dir(settings).join(format!("{safe}.json"))
}

/// The start time of process `pid` (clock ticks since boot), if it exists
/// and has not exited (a zombie waiting for its parent counts as gone).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so
    // the fields are counted from the last `)`. starttime is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The executable name of process `pid`.
fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim().to_owned())
}

impl Record {
    /// Whether the recorded ssh is still that very process.
    pub fn alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
            && process_name(self.pid).is_some_and(|name| name == "ssh")
    }

    /// The local address of the forward `name`.
    pub fn local(&self, name: &str) -> Option<SocketAddr> {
        self.forwards
            .iter()
            .find(|f| f.name == name)
            .map(|f| SocketAddr::from(([127, 0, 0, 1], f.local)))
    }
}

/// The record of the tunnel to `instance_id`, if there is one.
pub fn load(settings: &Settings, instance_id: &str) -> Option<Record> {
    let text = std::fs::read_to_string(record_path(settings, instance_id)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Every record (live or stale).
pub fn load_all(settings: &Settings) -> Vec<(PathBuf, Option<Record>)> {
    let Ok(entries) = std::fs::read_dir(records_dir(settings)) else {
        return Vec::new();
    };
    let mut all: Vec<(PathBuf, Option<Record>)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let record = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok());
            (path, record)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Writes the record (0600 in a 0700 directory).
pub fn save(settings: &Settings, record: &Record) -> std::io::Result<()> {
    let path = record_path(settings, &record.instance_id);
    crate::private_file::write(&path, serde_json::to_string_pretty(record)?.as_bytes())
}

/// Removes the record of `instance_id`.
pub fn remove(settings: &Settings, instance_id: &str) {
    let _ = std::fs::remove_file(record_path(settings, instance_id));
}

/// Whether an HTTP server answers through the forward at `addr` (any HTTP
/// response counts). A bare TCP connect would not tell: ssh accepts the
/// local connection even when nothing listens at the other end.
pub async fn answers_http(addr: SocketAddr, path: &str) -> bool {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    else {
        return false;
    };
    http.get(format!("http://{addr}{path}"))
        .send()
        .await
        .is_ok()
}

/// The local address of the daemon forward of a live soong tunnel to
/// `instance_id`, if one runs and the daemon answers through it.
pub async fn daemon_address(settings: &Settings, instance_id: &str) -> Option<SocketAddr> {
    let record = load(settings, instance_id)?;
    if !record.alive() {
        return None;
    }
    let local = record.local("status")?;
    answers_http(local, "/health").await.then_some(local)
}

/// Ends the tunnel of `record` if its ssh is still that process: SIGTERM,
/// then up to two seconds for it to go. Returns whether it was running.
pub fn terminate(record: &Record) -> bool {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if !record.alive() {
        return false;
    }
    let Ok(pid) = i32::try_from(record.pid) else {
        return false;
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    for _ in 0..40 {
        if !record.alive() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_start_time_is_read_and_differs_from_a_child() {
        let me = start_ticks(std::process::id()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let theirs = start_ticks(child.id()).unwrap();
        assert!(theirs >= me);
        let record = Record {
            instance_id: "x".into(),
            instance_name: "x".into(),
            pid: child.id(),
            start_ticks: theirs,
            started_at: 0,
            forwards: Vec::new(),
        };
        // Not an ssh: never treated as a tunnel, never signalled.
        assert!(!record.alive());
        assert!(!terminate(&record));
        assert!(child.try_wait().unwrap().is_none());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(start_ticks(u32::MAX), None);
    }
}

//! SSH with pinned host keys, against a real `sshd` (Debian's
//! openssh-server) that the test starts on the instance's loopback address
//! with the host key `soong start` generated for that instance.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestContext, render};

const SSHD: &str = "/usr/sbin/sshd";

/// A real sshd on `ip:port`, stopped on drop.
pub struct Sshd {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tests that need sshd fail, loudly, where it is missing: a skipped
/// test would read as a passed one.
pub fn require_sshd() {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: `apt-get install openssh-server` (scripts/test installs it)"
    );
}

fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Sshd {
    /// Starts sshd on `ip:port` presenting `host_key` (OpenSSH PEM) and
    /// accepting the public key `authorized`.
    pub fn start(ip: &str, port: u16, host_key: &str, authorized: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("host_key");
        write_private(&key, host_key);
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, format!("{authorized}\n")).unwrap();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {ip}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nAllowTcpForwarding yes\nLogLevel ERROR\n",
                key.display(),
                authorized_keys.display()
            ),
        )
        .unwrap();
        // sshd's privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut sshd = Self { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((ip, port)).is_err() {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                let mut text = String::new();
                sshd.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut text)
                    .unwrap();
                panic!("sshd exited ({status}): {text}");
            }
            assert!(Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }
}

/// A `TestContext` whose daemon is reached over SSH, an instance started
/// with `--no-wait`, and sshd for it: returns (context, instance id, ip,
/// sshd).
pub struct SshWorld {
    pub context: TestContext,
    pub id: String,
    pub ip: String,
    pub client_public: String,
    pub ssh_port: u16,
}

/// A `TestContext` with real daemons whose config reaches them over SSH
/// (`access: ssh`, this user, a free SSH port) and a login key at
/// `~/.ssh/id_ed25519`; returns it with the SSH port and the key's public
/// line.
pub fn ssh_context() -> (TestContext, u16, String) {
    let context = TestContext::with_daemons("valid.yaml");
    let ssh_port = free_port();
    // The login key, where `ssh.key_path: ~/.ssh/id_ed25519` points
    // (HOME is the test's directory).
    let ssh_dir = context.dir.path().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let client = soong::ssh::generate_host_key("test-client").unwrap();
    write_private(&ssh_dir.join("id_ed25519"), client.private_openssh.expose());
    let text = std::fs::read_to_string(&context.config)
        .unwrap()
        .replace("access: direct", "access: ssh")
        .replace(
            "  user: ubuntu",
            &format!("  user: {}\n  port: {ssh_port}", current_user()),
        );
    std::fs::write(&context.config, text).unwrap();
    (context, ssh_port, client.public)
}

impl SshWorld {
    pub fn new() -> Self {
        let (context, ssh_port, client_public) = ssh_context();
        let output = context
            .command(&[
                "start",
                "-y",
                "--no-wait",
                "--json",
                "--model",
                "llama-3.1-8b",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", render(&output));
        let launched: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let id = launched["id"].as_str().unwrap().to_owned();
        let machines = context.machines.as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while machines.host_key(&id).is_none() {
            assert!(Instant::now() < deadline, "the instance did not boot");
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = context.run(&["status", "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let ip = rows[0]["ip"].as_str().unwrap().to_owned();
        Self {
            context,
            id,
            ip,
            client_public,
            ssh_port,
        }
    }

    /// sshd with the host key the instance was given.
    pub fn sshd(&self) -> Sshd {
        let key = self
            .context
            .machines
            .as_ref()
            .unwrap()
            .host_key(&self.id)
            .unwrap();
        Sshd::start(&self.ip, self.ssh_port, key.expose(), &self.client_public)
    }

    /// sshd with some other host key at the instance's address.
    pub fn impostor(&self) -> Sshd {
        let key = soong::ssh::generate_host_key("impostor").unwrap();
        Sshd::start(
            &self.ip,
            self.ssh_port,
            key.private_openssh.expose(),
            &self.client_public,
        )
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.context.dir.path().join("known_hosts")
    }
}

/// Every process's command line, joined.
pub fn all_command_lines() -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            all.push_str(&String::from_utf8_lossy(&bytes).replace('\0', " "));
            all.push('\n');
        }
    }
    all
}

/// Polls every process's command line while `during` runs; returns
/// `during`'s result and whether `needle` ever appeared.
pub fn watching_command_lines<T>(needle: &str, during: impl FnOnce() -> T) -> (T, bool) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let needle = needle.to_owned();
        std::thread::spawn(move || {
            let mut seen = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen |= all_command_lines().contains(&needle);
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    let result = during();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (result, watcher.join().unwrap())
}

const TOKEN: &str = "test-daemon-token-0123456789abcdef";

#[test]
fn start_pins_the_generated_host_key_in_a_private_known_hosts() {
    require_sshd();
    let world = SshWorld::new();
    let text = std::fs::read_to_string(world.known_hosts()).unwrap();
    let mode = std::fs::metadata(world.known_hosts())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let key = world
        .context
        .machines
        .as_ref()
        .unwrap()
        .host_key(&world.id)
        .unwrap();
    let public = ssh_key::PrivateKey::from_openssh(key.expose())
        .unwrap()
        .public_key()
        .to_openssh()
        .unwrap();
    let line = format!("[{}]:{}", world.ip, world.ssh_port);
    assert!(
        text.lines()
            .any(|l| l.contains(&line) && l.ends_with(&public)),
        "{text}\nwanted {line} … {public}"
    );
}

#[test]
fn ssh_runs_commands_with_the_pinned_key_and_passes_their_exit_status() {
    require_sshd();
    let world = SshWorld::new();
    let _sshd = world.sshd();
    let output = world
        .context
        .run(&["ssh", "--", "echo", "hello from the instance"]);
    assert!(output.status.success(), "{}", render(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello from the instance\n"
    );
    let output = world.context.run(&["ssh", "--", "exit", "7"]);
    assert_eq!(output.status.code(), Some(7), "{}", render(&output));
}

#[test]
fn ssh_refuses_a_machine_with_another_host_key() {
    require_sshd();
    let world = SshWorld::new();
    let _sshd = world.impostor();
    let output = world.context.run(&["ssh", "--", "true"]);
    let text = render(&output);
    assert_eq!(output.status.code(), Some(255), "{text}");
    assert!(text.contains("Host key verification failed"), "{text}");
    let output = world.context.run(&["status", "--json"]);
    let text = render(&output);
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows[0]["daemon"]["reachable"], false, "{text}");
    assert!(
        rows[0]["daemon"]["error"]
            .as_str()
            .unwrap()
            .contains("Host key verification failed"),
        "{text}"
    );
}

#[test]
fn status_and_extend_reach_the_daemon_through_ssh_without_the_token_on_a_command_line() {
    require_sshd();
    let world = SshWorld::new();
    let _sshd = world.sshd();
    let (output, seen) = watching_command_lines(TOKEN, || world.context.run(&["status", "--json"]));
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows[0]["daemon"]["reachable"], true, "{text}");
    assert_eq!(rows[0]["daemon"]["state"], "running", "{text}");
    assert!(!seen, "the token appeared on a command line");
    let output = world.context.run(&["extend", "1", "--json"]);
    assert!(output.status.success(), "{}", render(&output));
    let granted: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(granted["granted_seconds"], 3600);
}

#[test]
fn start_waits_for_the_daemon_over_ssh_by_default() {
    require_sshd();
    let (context, ssh_port, client_public) = ssh_context();
    let child = context
        .command(&["start", "-y", "--model", "llama-3.1-8b"])
        .env("SOONG_WAIT_SCALE", "0.05")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The "instance" boots; its sshd comes up with the key it was given,
    // while `start` keeps trying to reach its daemon.
    let machines = context.machines.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (id, ip) = loop {
        if let Some(booted) = machines.booted().into_iter().next() {
            break booted;
        }
        assert!(Instant::now() < deadline, "the instance did not boot");
        std::thread::sleep(Duration::from_millis(50));
    };
    let key = machines.host_key(&id).unwrap();
    let _sshd = Sshd::start(&ip.to_string(), ssh_port, key.expose(), &client_public);
    let output = child.wait_with_output().unwrap();
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("is up and guarded by its daemon"), "{text}");
}

#[test]
fn nothing_in_the_crate_turns_host_key_checking_off() {
    let forbidden = concat!("StrictHostKeyChecking", "=no");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.to_path_buf(), root.join("../docs/guide")];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    stack.push(path);
                }
            } else if let Ok(text) = std::fs::read_to_string(&path)
                && text
                    .to_ascii_lowercase()
                    .contains(&forbidden.to_ascii_lowercase())
            {
                found.push(path);
            }
        }
    }
    assert!(found.is_empty(), "{forbidden} in {found:?}");
}

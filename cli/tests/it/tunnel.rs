//! `soong tunnel` against a real sshd: forwards that answer, `status`
//! through the tunnel, `stop` ending exactly its own ssh, stale records.

use std::process::Command;
use std::time::Duration;

use crate::common::render;
use crate::ssh::{SshWorld, all_command_lines, require_sshd};

const TOKEN: &str = "test-daemon-token-0123456789abcdef";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn a_tunnel_forwards_the_daemon_and_stop_ends_exactly_its_own_ssh() {
    require_sshd();
    let world = SshWorld::new();
    let sshd = world.sshd();
    let status_port = free_port();
    let output = world.context.run(&[
        "tunnel",
        "start",
        "--json",
        "--status-port",
        &status_port.to_string(),
    ]);
    assert!(output.status.success(), "{}", render(&output));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let pid = record["pid"].as_u64().unwrap();
    assert!(alive(pid));
    // Starting again finds the running tunnel instead of starting another.
    let output = world.context.run(&["tunnel", "start", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(again["pid"], record["pid"], "{}", render(&output));

    let output = world.context.run(&["tunnel", "status", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown[0]["running"], true, "{shown}");
    let forwards = shown[0]["forwards"].as_array().unwrap();
    let status = forwards.iter().find(|f| f["name"] == "status").unwrap();
    assert_eq!(status["local"], status_port);
    assert_eq!(status["answers"], true, "{shown}");
    // Nothing listens on the instance's 127.0.0.1:5678.
    let n8n = forwards.iter().find(|f| f["name"] == "n8n").unwrap();
    assert_eq!(n8n["answers"], false, "{shown}");

    // With the listening sshd gone, only the tunnel's session is left:
    // `status` must go through it.
    drop(sshd);
    let output = world.context.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows[0]["daemon"]["reachable"], true, "{}", render(&output));
    assert!(!all_command_lines().contains(TOKEN));

    let mut decoy = Command::new("sleep").arg("60").spawn().unwrap();
    let output = world.context.run(&["tunnel", "stop", "--json"]);
    assert!(output.status.success(), "{}", render(&output));
    let stopped: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(stopped[0]["was_running"], true, "{stopped}");
    assert!(!alive(pid), "the tunnel's ssh still runs");
    assert!(
        decoy.try_wait().unwrap().is_none(),
        "another process was hit"
    );
    decoy.kill().unwrap();
    decoy.wait().unwrap();
    let output = world.context.run(&["tunnel", "status", "--json"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "[]");
}

#[test]
fn a_stale_record_never_blocks_a_new_tunnel_and_its_pid_is_never_signalled() {
    require_sshd();
    let world = SshWorld::new();
    let _sshd = world.sshd();
    // A record whose PID now belongs to some other process.
    let mut decoy = Command::new("sleep").arg("60").spawn().unwrap();
    let dir = world.context.dir.path().join(".local/state/soong/tunnels");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{}.json", world.id)),
        serde_json::json!({
            "instance_id": world.id, "instance_name": "old", "pid": decoy.id(),
            "start_ticks": 1, "started_at": 0,
            "forwards": [{"name": "status", "local": 1, "remote": 8080}]
        })
        .to_string(),
    )
    .unwrap();
    let output = world.context.run(&["tunnel", "stop"]);
    assert!(output.status.success(), "{}", render(&output));
    assert!(
        render(&output).contains("had already ended"),
        "{}",
        render(&output)
    );
    std::fs::write(
        dir.join(format!("{}.json", world.id)),
        serde_json::json!({
            "instance_id": world.id, "instance_name": "old", "pid": decoy.id(),
            "start_ticks": 1, "started_at": 0,
            "forwards": [{"name": "status", "local": 1, "remote": 8080}]
        })
        .to_string(),
    )
    .unwrap();
    let output = world.context.run(&["tunnel", "start", "--json"]);
    assert!(output.status.success(), "{}", render(&output));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_ne!(record["pid"].as_u64(), Some(u64::from(decoy.id())));
    let output = world.context.run(&["tunnel", "stop"]);
    assert!(output.status.success(), "{}", render(&output));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        decoy.try_wait().unwrap().is_none(),
        "the decoy was signalled"
    );
    decoy.kill().unwrap();
    decoy.wait().unwrap();
}

#[test]
fn stopping_the_instance_ends_its_tunnel() {
    require_sshd();
    let world = SshWorld::new();
    let _sshd = world.sshd();
    let output = world.context.run(&["tunnel", "start", "--json"]);
    assert!(output.status.success(), "{}", render(&output));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let pid = record["pid"].as_u64().unwrap();
    let output = world
        .context
        .command(&["stop", "-y"])
        .env("SOONG_WAIT_SCALE", "0.1")
        .output()
        .unwrap();
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("Stopped the tunnel"), "{text}");
    assert!(!alive(pid));
    // A terminated instance's key is forgotten: its address may be reused.
    let known = std::fs::read_to_string(world.known_hosts()).unwrap();
    assert!(!known.contains(&world.ip), "{known}");
    // The daemon's last status was read through the tunnel for the history.
    let output = world.context.run(&["history", "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let stop = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "terminate")
        .unwrap();
    assert!(stop["lease_deadline"].is_i64(), "{history}");
}

#[test]
fn a_wrong_host_key_leaves_no_tunnel_behind() {
    require_sshd();
    let world = SshWorld::new();
    let _sshd = world.impostor();
    let output = world.context.run(&["tunnel", "start"]);
    let text = render(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("Host key verification failed"), "{text}");
    let output = world.context.run(&["tunnel", "status", "--json"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "[]");
}

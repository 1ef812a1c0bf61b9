//! The whole path with real daemons: `start` launches, the simulator boots
//! the instance, a real `soong-daemon` runs from the user-data `start`
//! generated, and `status`, `extend` and `stop` talk to it.

use crate::common::{TestContext, render};
use crate::soong_snapshot;
use base64::Engine as _;

fn start(context: &TestContext) {
    let output = context
        .command(&["start", "-y", "--model", "llama-3.1-8b"])
        .env("SOONG_WAIT_SCALE", "0.05")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\nfailures: {:?}",
        render(&output),
        context.machines.as_ref().unwrap().failures()
    );
}

#[test]
fn start_waits_for_a_healthy_daemon_and_says_how_to_connect() {
    let context = TestContext::with_daemons("valid.yaml");
    let output = context
        .command(&[
            "start",
            "-y",
            "--model",
            "llama-3.1-8b",
            "--hours",
            "2",
            "--idle-minutes",
            "15",
        ])
        .env("SOONG_WAIT_SCALE", "0.05")
        .output()
        .unwrap();
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("is up and guarded by its daemon"), "{text}");
    assert!(
        text.contains("Connect:  soong ssh   (ubuntu@127."),
        "{text}"
    );
}

#[test]
fn status_with_a_live_daemon_shows_deadlines_idle_and_cost() {
    let context = TestContext::with_daemons("valid.yaml");
    start(&context);
    soong_snapshot!(table context, ["status"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
         NAME  ID  STATUS  GPU  REGION  UPTIME  COST  AT SHUTDOWN  SHUTDOWN  IDLE  LEASE LEFT
         [NAME]  [ID]  active  gpu_1x_a10  us-west-1  [DURATION]  $0.00  $0.38  [CLOCK] (idle_timeout, in [DURATION])  [DURATION] of [DURATION]  [DURATION]

        ----- stderr -----
    "#);
    let output = context.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let daemon = &rows[0]["daemon"];
    assert_eq!(daemon["reachable"], true, "{rows}");
    assert_eq!(daemon["state"], "running");
    assert_eq!(daemon["shutdown_reason"], "idle_timeout");
    assert_eq!(daemon["idle_timeout_seconds"], 1800);
}

#[test]
fn extend_reports_grants_and_the_cap_truthfully() {
    let context = TestContext::with_daemons("valid.yaml");
    start(&context);
    let output = context.run(&["extend", "2", "--json"]);
    assert!(output.status.success(), "{}", render(&output));
    let granted: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(granted["granted_seconds"], 7200);
    assert_eq!(granted["capped"], false);
    // 4 h + 2 h leaves 2 h to the 8 h maximum: asking for 3 grants 2.
    let output = context.run(&["extend", "3"]);
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("granted 2h 00m"), "{text}");
    // At the cap the daemon refuses, and so does the CLI.
    soong_snapshot!(context, ["extend", "1"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: the lease of `[NAME]` cannot be extended: the lease already ends at its maximum ([TIME], launch + max_lease); it cannot be extended further

        hint: the lease is at its maximum (8 h from launch by default); the hard deadline never moves
    "#);
}

#[test]
fn stop_waits_until_lambda_confirms_and_billing_stops() {
    let context = TestContext::with_daemons("valid.yaml");
    start(&context);
    let output = context
        .command(&["stop", "-y"])
        .env("SOONG_WAIT_SCALE", "0.1")
        .output()
        .unwrap();
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("is terminated; billing has stopped"),
        "{text}"
    );
    assert!(context.sim().billing().iter().all(|b| !b.running));
}

#[test]
fn the_demo_ends_with_the_daemon_terminating_the_idle_instance() {
    let context = TestContext::new(None);
    let started = std::time::Instant::now();
    let output = context.run(&["demo", "--idle-seconds", "8"]);
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("the instance was terminated by its daemon (idle_timeout), not by the CLI"),
        "{text}"
    );
    assert!(text.contains("billing stopped after"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
}

#[test]
fn with_a_worker_configured_the_daemon_gets_its_own_heartbeat_token() {
    let context = TestContext::with_daemons("valid.yaml");
    let mut text = std::fs::read_to_string(&context.config).unwrap();
    // Nothing listens there: heartbeats fail, which must not stop the daemon.
    text.push_str("worker:\n  url: http://127.0.0.1:9\n  secret: worker-secret-for-tests\n");
    std::fs::write(&context.config, text).unwrap();
    let output = context.run(&[
        "start",
        "--dry-run",
        "--json",
        "--name",
        "soong-worker-test",
    ]);
    assert!(output.status.success(), "{}", render(&output));
    let request: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let user_data = request["user_data"].as_str().unwrap();
    let cloud: serde_yaml::Value = serde_yaml::from_str(user_data).unwrap();
    let file = |path: &str| {
        cloud["write_files"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("no {path} in {user_data}"))
            .clone()
    };
    let config = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(file("/etc/soong/daemon.yaml")["content"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        config.contains("token_file: /run/credentials/soong-daemon.service/worker-token"),
        "{config}"
    );
    assert_eq!(
        file("/etc/soong/credentials/worker-token")["content"],
        "********"
    );
    assert!(
        !user_data.contains("worker-secret-for-tests"),
        "{user_data}"
    );
    start(&context);
}

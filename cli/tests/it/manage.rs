//! `status`, `stop` and `extend` touch only soong-managed instances.

use lambda_cloud::types::Tag;
use lambda_sim::{NewInstance, SimConfig};

use crate::common::TestContext;
use crate::soong_snapshot;

fn managed(name: &str) -> NewInstance {
    // 16 minutes ago: 20 cents at $0.75/h, and ~24 s from the next cent, so
    // a slow test run cannot change the snapshot.
    let launched = time::OffsetDateTime::now_utc().unix_timestamp() - 960;
    NewInstance {
        name: Some(name.to_owned()),
        tags: vec![
            Tag::new("soong:managed", "true"),
            Tag::new("soong:launched-at", launched.to_string()),
            Tag::new("soong:hard-deadline", (launched + 8 * 3600).to_string()),
            Tag::new("soong:lease-deadline", (launched + 4 * 3600).to_string()),
            Tag::new("soong:model", "llama-3.1-8b"),
        ],
        ..NewInstance::default()
    }
}

fn unmanaged(name: &str) -> NewInstance {
    NewInstance {
        name: Some(name.to_owned()),
        ..NewInstance::default()
    }
}

#[test]
fn status_without_instances_says_how_to_start_one() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["status"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----

        ----- stderr -----
        No soong instances. `soong start` launches one.
    "#);
}

#[test]
fn status_shows_a_dead_daemon_loudly_and_ignores_other_instances() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    context
        .sim()
        .insert_instance(managed("soong-test-000001"))
        .unwrap();
    context
        .sim()
        .insert_instance(unmanaged("training-run"))
        .unwrap();
    soong_snapshot!(table context, ["status"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
         NAME  ID  STATUS  GPU  REGION  UPTIME  COST  AT SHUTDOWN  SHUTDOWN  IDLE  LEASE LEFT
         [NAME]  [ID]  active  gpu_1x_a10  us-west-1  [DURATION]  $0.20  $6.00  DAEMON DEAD: only the hard deadline ([CLOCK]) stops it  ?  ?

        ----- stderr -----
        warning: the daemon of `[NAME]` does not answer (the daemon at http://[ADDR] did not answer); it is billing without idle or lease enforcement. Stop it with `soong stop --instance [NAME]` if it is not needed
    "#);
}

#[test]
fn status_json_reports_an_unreachable_daemon() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    context
        .sim()
        .insert_instance(managed("soong-test-000001"))
        .unwrap();
    context
        .sim()
        .insert_instance(unmanaged("training-run"))
        .unwrap();
    let output = soong_snapshot!(context, ["status", "--json"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        [
          {
            "cost_so_far_cents": 20.0,
            "daemon": {
              "error": "the daemon at http://[ADDR] did not answer",
              "reachable": false
            },
            "hard_deadline": [UNIX],
            "id": "[ID]",
            "instance_type": "gpu_1x_a10",
            "ip": "127.0.1.1",
            "launched_at": [UNIX],
            "model": "llama-3.1-8b",
            "name": "[NAME]",
            "price_cents_per_hour": 75,
            "region": "us-west-1",
            "status": "active",
            "uptime_seconds": [N]
          }
        ]

        ----- stderr -----
    "#);
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "soong-test-000001");
    assert_eq!(rows[0]["daemon"]["reachable"], false);
    assert_eq!(rows[0]["model"], "llama-3.1-8b");
    assert!(rows[0]["cost_so_far_cents"].as_f64().unwrap() > 0.0);
}

#[test]
fn stop_terminates_the_only_soong_instance_and_nothing_else() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let ours = context
        .sim()
        .insert_instance(managed("soong-test-000001"))
        .unwrap();
    let theirs = context
        .sim()
        .insert_instance(unmanaged("training-run"))
        .unwrap();
    let output = context.run(&["stop", "-y"]);
    assert!(
        output.status.success(),
        "{}",
        crate::common::render(&output)
    );
    let billing = context.sim().billing();
    let running = |id: &str| {
        billing
            .iter()
            .find(|b| b.instance_id == id)
            .unwrap()
            .running
    };
    assert!(!running(&ours));
    assert!(running(&theirs));
}

#[test]
fn stop_refuses_an_instance_soong_did_not_launch() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    context
        .sim()
        .insert_instance(unmanaged("training-run"))
        .unwrap();
    soong_snapshot!(context, ["stop", "-y", "--instance", "training-run"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: instance `training-run` was not launched by soong (it has no `soong:managed` tag)

        hint: soong only stops instances it launched; use Lambda's console for others
    "#);
}

#[test]
fn stop_without_a_terminal_needs_yes() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    context
        .sim()
        .insert_instance(managed("soong-test-000001"))
        .unwrap();
    soong_snapshot!(context, ["stop"], @r#"
        success: false
        exit_code: 2
        ----- stdout -----

        ----- stderr -----
        error: refusing to terminate an instance without confirmation: stdin is not a terminal

        hint: pass `--yes` (`-y`) to confirm in advance
    "#);
}

#[test]
fn several_instances_need_an_instance_flag() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    context
        .sim()
        .insert_instance(managed("soong-test-000001"))
        .unwrap();
    context
        .sim()
        .insert_instance(managed("soong-test-000002"))
        .unwrap();
    soong_snapshot!(context, ["extend", "1"], @r#"
        success: false
        exit_code: 2
        ----- stdout -----

        ----- stderr -----
        error: 2 soong instances are running; which one to extend is ambiguous:
          [NAME] ([ID], gpu_1x_a10, us-west-1, active)
          [NAME] ([ID], gpu_1x_a10, us-west-1, active)

        hint: pass `--instance <ID|NAME>`
    "#);
}

#[test]
fn over_ssh_an_instance_without_a_pinned_host_key_is_not_connected_to() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let text = std::fs::read_to_string(&context.config)
        .unwrap()
        .replace("access: direct", "access: ssh");
    std::fs::write(&context.config, text).unwrap();
    context
        .sim()
        .insert_instance(managed("soong-test-000001"))
        .unwrap();
    soong_snapshot!(context, ["extend", "1"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: cannot extend `[NAME]`
          Caused by: cannot reach the daemon over SSH
          Caused by: no host key is pinned for `[NAME]` in `[TEMP]/known_hosts`

        hint: soong pins the host key it generates at `soong start`; an instance launched elsewhere needs its line copied from that machine's soong `known_hosts` (soong never trusts a key on first use)
    "#);
}

#[test]
fn status_watch_refreshes_until_interrupted() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    context
        .sim()
        .insert_instance(managed("soong-test-000001"))
        .unwrap();
    let child = context
        .command(&["status", "--watch", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(4500));
    // SIGINT, as Ctrl-C would send: the watch ends cleanly.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = crate::common::render(&output);
    assert!(output.status.success(), "{text}");
    let rounds = String::from_utf8_lossy(&output.stderr)
        .matches("Every 2s")
        .count();
    assert!(rounds >= 2, "{text}");
}

#[test]
fn a_terminated_instance_shows_no_growing_cost() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let mut gone = managed("soong-test-000001");
    gone.status = lambda_cloud::InstanceStatus::Terminated;
    context.sim().insert_instance(gone).unwrap();
    let output = context.run(&["status", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        crate::common::render(&output)
    );
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows[0]["status"], "terminated");
    assert_eq!(rows[0]["cost_so_far_cents"], serde_json::Value::Null);
    assert_eq!(
        rows[0]["daemon"],
        serde_json::Value::Null,
        "a terminated instance's daemon is not asked"
    );
}

#[test]
fn extend_with_a_dead_daemon_says_what_still_stops_the_instance() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    context
        .sim()
        .insert_instance(managed("soong-test-000001"))
        .unwrap();
    soong_snapshot!(context, ["extend", "1"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: cannot extend `[NAME]`
          Caused by: the daemon at http://[ADDR] did not answer
          Caused by: error sending request for url (http://[ADDR]/extend)
          Caused by: client error (Connect)
          Caused by: tcp connect error
          Caused by: Connection refused (os error 111)

        hint: the daemon may still be starting, or dead; if dead, nothing but the hard deadline stops this instance: `soong stop`
    "#);
}

#[test]
fn extend_by_nothing_is_a_usage_error() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["extend", "0"], @r#"
        success: false
        exit_code: 2
        ----- stdout -----

        ----- stderr -----
        error: cannot extend by 0 hours

        hint: give a number of hours between 0 and 8, e.g. `soong extend 1.5`
    "#);
}

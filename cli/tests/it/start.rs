//! `soong start` against the simulator: validation before any money is
//! spent, the exact launch request, and recovery from lost answers.

use lambda_sim::SimConfig;

use crate::common::TestContext;
use crate::soong_snapshot;

#[test]
fn dry_run_prints_the_request_with_secrets_masked() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = soong_snapshot!(context, ["start", "--dry-run", "--model", "llama-3.1-8b"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
        {
          "file_system_names": [
            "coding-stack"
          ],
          "instance_type_name": "gpu_1x_a10",
          "name": "[NAME]",
          "region_name": "us-west-1",
          "ssh_key_names": [
            "default"
          ],
          "tags": [
            {
              "key": "soong:managed",
              "value": "true"
            },
            {
              "key": "soong:launched-at",
              "value": "[UNIX]"
            },
            {
              "key": "soong:hard-deadline",
              "value": "[UNIX]"
            },
            {
              "key": "soong:lease-deadline",
              "value": "[UNIX]"
            },
            {
              "key": "soong:model",
              "value": "llama-3.1-8b"
            }
          ],
          "user_data": "<below>"
        }
        --- user-data (secrets masked) ---
        #cloud-config
        # Written by soong 0.1.0 (the minimal form; see cloud-init/).
        ssh_deletekeys: true
        ssh_genkeytypes: []
        ssh_keys:
          ed25519_private: '********'
          ed25519_public: ssh-ed25519 [PUBLIC KEY] [NAME]
        write_files:
        - path: /etc/soong/daemon.yaml
          permissions: '0600'
          owner: root:root
          content: |
            listen: 0.0.0.0:[PORT]
            token_file: /etc/soong/token
            lambda:
              api_url: http://[ADDR]/api/v1
              api_key_file: /etc/soong/lambda-api-key
            instance:
              name: [NAME]
              launched_at: [TIME]
            policy:
              idle_timeout: 30m
              lease: 4h
              max_lease: 8h
              hard_timeout: 8h
            activity:
              ports:
              - 8000
              terminals: true
              sample_interval: [DURATION]
            state_dir: /var/lib/soong-daemon
            pre_terminate: null
            pre_terminate_timeout: 1m
        - path: /etc/soong/token
          permissions: '0600'
          owner: root:root
          content: '********'
        - path: /etc/soong/lambda-api-key
          permissions: '0600'
          owner: root:root
          content: '********'
        - path: /etc/systemd/system/soong-daemon.service
          permissions: '0644'
          owner: root:root
          content: |
            [Unit]
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
        runcmd:
        - - systemctl
          - daemon-reload
        - - systemctl
          - enable
          - --now
          - soong-daemon.service

        ----- stderr -----
        Model:     llama-3.1-8b (20.5 GiB of VRAM needed)
        Instance:  gpu_1x_a10 (1x A10 (24 GB PCIe)) in us-west-1
        Name:      [NAME]
        Price:     $0.75/h
        Lease:     [DURATION] (until [CLOCK]), extendable to [DURATION]; hard stop at [CLOCK]
        Idle stop: after [DURATION] without activity
        Cost:      at most $3.00 for the lease, $6.00 if extended to the maximum
        Dry run: nothing was launched.
    "#);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("test-daemon-token"), "token leaked");
    assert!(!stdout.contains(&context.sim().api_key()), "API key leaked");
    let launches = context
        .sim()
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/launch"))
        .count();
    assert_eq!(launches, 0);
}

#[test]
fn an_unknown_model_suggests_close_ones() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["start", "--model", "llama-3.1-7b", "-y"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: unknown model `llama-3.1-7b`

        hint: did you mean `llama-3.1-70b`, `llama-3.1-8b`? (`soong models list` shows them all)
    "#);
}

#[test]
fn no_capacity_exits_3_and_names_where_there_is() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["start", "--gpu", "gpu_1x_gh200", "--model", "llama-3.1-8b", "-y"], @r#"
        success: false
        exit_code: 3
        ----- stdout -----

        ----- stderr -----
        error: `gpu_1x_gh200` has no capacity in `us-west-1`

        hint: it has capacity in us-east-3; types that fit with capacity in `us-west-1`: `gpu_1x_a10` ($0.75/h), `gpu_1x_a6000` ($0.80/h), `gpu_1x_a100` ($1.29/h)
    "#);
}

#[test]
fn a_filesystem_in_another_region_is_caught_before_launch() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["start", "--region", "us-east-1", "-y"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: filesystem `coding-stack` is in `us-west-1`, but the launch is in `us-east-1`; it could not be attached

        hint: launch with `--region us-west-1`, or change `lambda.filesystem_name` to a filesystem in `us-east-1`
    "#);
}

#[test]
fn a_type_too_small_for_the_model_is_refused() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["start", "--model", "qwen2.5-coder-32b", "--gpu", "gpu_1x_a10", "-y"], @r#"
        success: false
        exit_code: 2
        ----- stdout -----

        ----- stderr -----
        error: `qwen2.5-coder-32b` needs about 70.6 GiB of VRAM; `gpu_1x_a10` has 24 GiB (22 GiB usable)

        hint: `gpu_1x_h100_pcie` fits and has capacity in `us-west-1`
    "#);
}

#[test]
fn without_a_terminal_start_asks_for_yes() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context.run(&["start"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        crate::common::render(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`--yes`"), "{stderr}");
}

#[test]
fn a_bad_key_exits_4() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context
        .command(&["start", "-y"])
        .env("LAMBDA_API_KEY", "not-a-key")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        crate::common::render(&output)
    );
}

#[test]
fn a_daemon_that_never_answers_is_loud_and_yes_terminates_the_instance() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context
        .command(&["start", "-y", "--model", "llama-3.1-8b"])
        .env("SOONG_WAIT_SCALE", "0.005")
        .output()
        .unwrap();
    let text = crate::common::render(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("UNGUARDED"), "{text}");
    assert!(
        text.contains("never became healthy and was terminated"),
        "{text}"
    );
    // The launch request: one key, the filesystem, a soong name, the tags,
    // and user-data (redacted in the simulator's log).
    let log = context.sim().request_log();
    let launches: Vec<_> = log.iter().filter(|r| r.path.ends_with("/launch")).collect();
    assert_eq!(launches.len(), 1);
    let body = launches[0].request.as_ref().unwrap();
    assert_eq!(body["ssh_key_names"], serde_json::json!(["default"]));
    assert_eq!(
        body["file_system_names"],
        serde_json::json!(["coding-stack"])
    );
    assert!(
        body["name"]
            .as_str()
            .unwrap()
            .starts_with("soong-llama-3.1-8b-")
    );
    let tags = body["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "soong:managed" && t["value"] == "true")
    );
    assert!(body.get("user_data").is_some());
    let billing = context.sim().billing();
    assert_eq!(billing.len(), 1);
    assert!(
        !billing[0].running,
        "the unguarded instance must not keep billing"
    );
}

#[test]
fn a_5xx_on_launch_looks_for_the_name_and_launches_once() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    context.sim().set_faults(lambda_sim::Faults {
        scripted: vec![lambda_sim::ScriptedFault {
            method: Some("POST".into()),
            path: "/instance-operations/launch".into(),
            status: 503,
            count: 1,
            retry_after: None,
        }],
        ..lambda_sim::Faults::default()
    });
    let output = context
        .command(&["start", "-y", "--no-wait", "--model", "llama-3.1-8b"])
        .env("SOONG_WAIT_SCALE", "0.05")
        .output()
        .unwrap();
    let text = crate::common::render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("looking for"), "{text}");
    let log = context.sim().request_log();
    let launches = log.iter().filter(|r| r.path.ends_with("/launch")).count();
    assert_eq!(
        launches, 2,
        "one failed launch, one relaunch after the name was not found"
    );
    assert_eq!(
        context.sim().billing().len(),
        1,
        "exactly one instance exists"
    );
}

#[test]
fn wait_for_capacity_launches_once_capacity_frees_up() {
    let mut config = SimConfig::for_tests();
    config.scenario.capacity = [(
        "gpu_1x_a10".to_owned(),
        [("us-west-1".to_owned(), 1)].into_iter().collect(),
    )]
    .into_iter()
    .collect();
    let context = TestContext::with_sim("valid.yaml", config);
    let first = context
        .command(&[
            "start",
            "-y",
            "--no-wait",
            "--name",
            "soong-first",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", crate::common::render(&first));
    // No capacity left: without waiting, exit 3.
    let output = context.run(&["start", "-y", "--no-wait", "--gpu", "gpu_1x_a10"]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        crate::common::render(&output)
    );
    let waiting = context
        .command(&[
            "start",
            "-y",
            "--no-wait",
            "--gpu",
            "gpu_1x_a10",
            "--wait-for-capacity",
            "30s",
        ])
        .env("SOONG_WAIT_SCALE", "0.02")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let stop = context
        .command(&["stop", "-y", "--instance", "soong-first"])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", crate::common::render(&stop));
    let output = waiting.wait_with_output().unwrap();
    let text = crate::common::render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("Capacity appeared"), "{text}");
}

#[test]
fn a_second_launch_warns_about_the_instance_already_running() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let first = context.run(&["start", "-y", "--no-wait", "--name", "soong-first"]);
    assert!(first.status.success(), "{}", crate::common::render(&first));
    let second = context.run(&["start", "-y", "--no-wait"]);
    let text = crate::common::render(&second);
    assert!(second.status.success(), "{text}");
    assert!(
        text.contains(
            "warning: already running: `soong-first` ($0.75/h); this launch adds another"
        ),
        "{text}"
    );
}

#[test]
fn an_instance_that_boots_unhealthy_is_loud_and_yes_terminates_it() {
    let mut config = SimConfig::for_tests();
    config.scenario.faults.unhealthy_rate = 1.0;
    let context = TestContext::with_sim("valid.yaml", config);
    let output = context
        .command(&["start", "-y", "--model", "llama-3.1-8b"])
        .env("SOONG_WAIT_SCALE", "0.005")
        .output()
        .unwrap();
    let text = crate::common::render(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("UNGUARDED"), "{text}");
    assert!(text.contains("`unhealthy`"), "{text}");
    assert!(
        text.contains("never became healthy and was terminated"),
        "{text}"
    );
    let billing = context.sim().billing();
    assert_eq!(billing.len(), 1);
    assert!(
        !billing[0].running,
        "the unhealthy instance no longer bills"
    );
}

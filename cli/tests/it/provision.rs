//! What instances are provisioned with: the daemon binary the user-data
//! names (refused before launching when unknown), and `--provision
//! ansible`, run against a fake `ansible-playbook` that records what it
//! was given.

use std::os::unix::fs::PermissionsExt as _;

use base64::Engine as _;
use std::path::{Path, PathBuf};

use lambda_sim::SimConfig;

use crate::common::{TestContext, render};

/// The fixture without its `provision:` section.
fn without_binary(context: &TestContext) {
    let text = std::fs::read_to_string(&context.config).unwrap();
    let kept = &text[..text.find("provision:").unwrap()];
    std::fs::write(&context.config, kept).unwrap();
}

fn launches(context: &TestContext) -> usize {
    context
        .sim()
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/launch"))
        .count()
}

#[test]
fn without_a_daemon_binary_start_says_what_to_set_and_launches_nothing() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    without_binary(&context);
    let output = context.run(&["start", "-y"]);
    let text = render(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("`provision.daemon_binary_url` and `provision.daemon_binary_sha256` not set"),
        "{text}"
    );
    assert!(text.contains("nothing was launched"), "{text}");
    assert_eq!(launches(&context), 0);
    // `--dry-run` still shows everything, with a placeholder.
    let output = context.run(&["start", "--dry-run"]);
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("url=<unset>"), "{text}");
    assert!(text.contains("sha256=<unset>"), "{text}");
    assert_eq!(launches(&context), 0);
}

#[test]
fn a_value_breaking_the_templates_contract_is_refused_before_launch() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let text = std::fs::read_to_string(&context.config)
        .unwrap()
        .replace("daemon_binary_sha256: 5f2b", "daemon_binary_sha256: XX2b");
    std::fs::write(&context.config, text).unwrap();
    let output = context.run(&["start", "-y"]);
    let text = render(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("`daemon_binary_sha256` must match"), "{text}");
    assert!(text.contains("`provision.daemon_binary_sha256`"), "{text}");
    assert_eq!(launches(&context), 0);
}

#[test]
fn dry_run_user_data_is_the_template_with_a_checkable_daemon_config_and_no_secret() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let mut text = std::fs::read_to_string(&context.config).unwrap();
    text.push_str("  hf_token: hf_secret_gated_token_77\n");
    text.push_str("worker:\n  url: http://127.0.0.1:9\n  secret: worker-secret-for-tests\n");
    std::fs::write(&context.config, text).unwrap();
    let output = context.run(&["start", "--dry-run", "--json"]);
    assert!(output.status.success(), "{}", render(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for secret in [
        "test-daemon-token-0123456789abcdef",
        "hf_secret_gated_token_77",
        "worker-secret-for-tests",
        &context.sim().api_key(),
    ] {
        assert!(!stdout.contains(secret), "{secret} leaked");
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        assert!(!stdout.contains(&encoded), "{secret} leaked in base64");
    }
    let request: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let user_data = request["user_data"].as_str().unwrap();
    assert!(user_data.starts_with("#cloud-config\n"));
    assert!(!user_data.contains("{{"));
    let cloud: serde_yaml::Value = serde_yaml::from_str(user_data).unwrap();
    let files = cloud["write_files"].as_sequence().unwrap();
    let config = files
        .iter()
        .find(|f| f["path"] == "/etc/soong/daemon.yaml")
        .unwrap();
    let config = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(config["content"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let parsed =
        soong_protocol::config::DaemonConfig::parse(Path::new("/etc/soong/daemon.yaml"), &config)
            .unwrap();
    assert!(parsed.check().is_empty(), "{:?}", parsed.check());
    assert_eq!(
        parsed.token_file.as_deref(),
        Some(Path::new("/run/credentials/soong-daemon.service/token"))
    );
    assert!(user_data.contains("url=https://example.com/soong/soong-daemon-x86_64-linux"));
    assert!(
        user_data.contains("SOONG_MODEL_HF_PATH=meta-llama/"),
        "{user_data}"
    );
    assert!(user_data.contains("HF_HOME=/lambda/nfs/coding-stack/soong/huggingface"));
    assert!(user_data.contains("User=ubuntu"));
}

/// A fake `ansible-playbook` that records its argv, environment, and the
/// mode and content of its `-e @file`, then exits with `exit_code`.
fn fake_ansible(context: &TestContext, exit_code: i32) -> (PathBuf, PathBuf, PathBuf) {
    let bin = context.dir.path().join("fake-bin");
    let record = context.dir.path().join("record");
    let ansible = context.dir.path().join("ansible");
    for dir in [&bin, &record, &ansible] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(ansible.join("playbook.yml"), "---\n").unwrap();
    std::fs::write(ansible.join("ansible.cfg"), "[defaults]\n").unwrap();
    let script = format!(
        r#"#!/bin/sh
rec='{}'
printf '%s\n' "$@" > "$rec/argv"
env > "$rec/env"
pwd > "$rec/cwd"
for a in "$@"; do
  case "$a" in
    @*) f="${{a#@}}"; stat -c %a "$f" > "$rec/mode"; cat "$f" > "$rec/vars";;
  esac
done
exit {exit_code}
"#,
        record.display()
    );
    let program = bin.join("ansible-playbook");
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, record, ansible)
}

fn run_ansible(context: &TestContext, exit_code: i32) -> (std::process::Output, PathBuf) {
    let (bin, record, ansible) = fake_ansible(context, exit_code);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = context
        .command(&["start", "-y", "--provision", "ansible"])
        .env("PATH", path)
        .env("SOONG_ANSIBLE_DIR", &ansible)
        .env("SOONG_WAIT_SCALE", "0.005")
        .output()
        .unwrap();
    (output, record)
}

#[test]
fn ansible_gets_every_variable_in_a_private_file_and_strict_host_key_checking() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let (output, record) = run_ansible(&context, 0);
    let text = render(&output);
    let recorded_argv = std::fs::read_to_string(record.join("argv")).expect(&text);
    let env = std::fs::read_to_string(record.join("env")).unwrap();
    let mode = std::fs::read_to_string(record.join("mode")).unwrap();
    let vars: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record.join("vars")).unwrap()).unwrap();
    let token = "test-daemon-token-0123456789abcdef";
    let api_key = context.sim().api_key();
    for secret in [token, api_key.as_str()] {
        assert!(
            !recorded_argv.contains(secret),
            "secret on the command line: {recorded_argv}"
        );
        assert!(!env.contains(secret), "secret in the environment");
    }
    assert_eq!(mode.trim(), "600");
    let words: Vec<&str> = recorded_argv.lines().collect();
    let after = |flag: &str| {
        let at = words
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("no {flag} in {recorded_argv}"));
        words[at + 1]
    };
    let inventory = after("-i");
    let ip = inventory.strip_suffix(',').unwrap();
    assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{inventory}");
    assert_eq!(after("-u"), "ubuntu");
    assert!(after("--private-key").ends_with(".ssh/id_ed25519"));
    let vars_file = after("-e").strip_prefix('@').unwrap();
    assert!(
        !Path::new(vars_file).exists(),
        "the vars file must be deleted"
    );
    assert!(words.last().unwrap().ends_with("ansible/playbook.yml"));
    assert!(env.contains("ANSIBLE_HOST_KEY_CHECKING=True"), "{env}");
    let ssh_args = env
        .lines()
        .find_map(|l| l.strip_prefix("ANSIBLE_SSH_ARGS="))
        .unwrap();
    assert!(
        ssh_args.contains("-o StrictHostKeyChecking=yes"),
        "{ssh_args}"
    );
    assert!(ssh_args.contains("UserKnownHostsFile="), "{ssh_args}");
    assert!(ssh_args.contains("known_hosts"), "{ssh_args}");
    assert_eq!(vars["ansible_ssh_common_args"], ssh_args);
    assert_eq!(vars["soong_daemon_token"], token);
    assert_eq!(vars["soong_daemon_lambda_api_key"], api_key.as_str());
    assert_eq!(
        vars["soong_daemon_binary_url"],
        "https://example.com/soong/soong-daemon-x86_64-linux"
    );
    assert_eq!(
        vars["sglang_model_hf_path"],
        "meta-llama/Llama-3.1-8B-Instruct"
    );
    assert_eq!(vars["sglang_model_served_name"], "llama-3.1-8b");
    assert_eq!(
        vars["soong_filesystem_mount_path"],
        "/lambda/nfs/coding-stack"
    );
    assert_eq!(vars["soong_daemon_idle_timeout"], "30m");
    assert_eq!(vars["soong_daemon_lease"], "4h");
    assert!(
        vars["soong_daemon_instance_name"]
            .as_str()
            .unwrap()
            .starts_with("soong-llama-3.1-8b-")
    );
    // The pinned key is on record for the address Ansible connects to.
    let known_hosts = ssh_args
        .split("UserKnownHostsFile=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let pins = std::fs::read_to_string(known_hosts).unwrap_or_default();
    assert!(pins.contains(ip), "{pins}");
    // The user-data only pins the host key.
    let log = context.sim().request_log();
    let launch = log.iter().find(|r| r.path.ends_with("/launch")).unwrap();
    assert!(launch.request.as_ref().unwrap().get("user_data").is_some());
    // No daemon in this simulator: loud, and `-y` terminates.
    assert!(text.contains("UNGUARDED"), "{text}");
    assert!(context.sim().billing().iter().all(|b| !b.running));
}

#[test]
fn a_failing_playbook_leads_to_the_unguarded_path() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let (output, _) = run_ansible(&context, 2);
    let text = render(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("UNGUARDED"), "{text}");
    assert!(text.contains("`ansible-playbook` failed"), "{text}");
    assert!(
        text.contains("never became healthy and was terminated"),
        "{text}"
    );
    assert!(context.sim().billing().iter().all(|b| !b.running));
}

#[test]
fn ansible_without_its_playbook_is_refused_before_launch() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context
        .command(&["start", "-y", "--provision", "ansible"])
        .env("SOONG_ANSIBLE_DIR", context.dir.path())
        .output()
        .unwrap();
    let text = render(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("no `playbook.yml`"), "{text}");
    assert_eq!(launches(&context), 0);
}

#[test]
fn ansible_dry_run_shows_the_host_key_only_user_data() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context.run(&["start", "--dry-run", "--provision", "ansible"]);
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("--provision ansible"), "{text}");
    assert!(text.contains("ssh_host_ed25519_key"), "{text}");
    assert!(!text.contains("install-daemon"), "{text}");
    assert!(!text.contains("OPENSSH PRIVATE KEY"), "{text}");
}

#[test]
fn ansible_without_ansible_playbook_on_path_is_refused_before_launch() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let (_, _, ansible) = fake_ansible(&context, 0);
    let empty = context.dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let output = context
        .command(&["start", "-y", "--provision", "ansible"])
        .env("PATH", &empty)
        .env("SOONG_ANSIBLE_DIR", &ansible)
        .output()
        .unwrap();
    let text = render(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("`ansible-playbook` is not on PATH"), "{text}");
    assert!(text.contains("nothing was launched"), "{text}");
    assert_eq!(launches(&context), 0);
}

#[test]
fn ansible_with_no_wait_is_a_usage_error() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context.run(&["start", "-y", "--no-wait", "--provision", "ansible"]);
    let text = render(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("no cost guard"), "{text}");
    assert_eq!(launches(&context), 0);
}

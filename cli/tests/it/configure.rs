//! `soong configure` without a terminal: flags only, checked against the
//! simulator, keeping what it is not given.

use std::os::unix::fs::PermissionsExt;

use lambda_sim::SimConfig;

use crate::common::{TestContext, render};
use crate::soong_snapshot;

#[test]
fn configure_by_flags_writes_a_private_checked_config_with_a_token() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    std::fs::remove_file(&context.config).unwrap();
    let nested = context.dir.path().join("fresh/dir/config.yaml");
    let output = context
        .command(&[
            "configure",
            "--ssh-key",
            "default",
            "--region",
            "us-west-1",
            "--filesystem",
            "coding-stack",
            "--model",
            "mistral-7b",
            "--lease-hours",
            "2",
            "--idle-minutes",
            "15",
            "--access",
            "direct",
        ])
        .env("SOONG_CONFIG", &nested)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", render(&output));
    let text = std::fs::read_to_string(&nested).unwrap();
    assert!(text.contains("token: "), "{text}");
    assert!(text.contains("model: mistral-7b"), "{text}");
    assert!(text.contains("lease_hours: 2"), "{text}");
    // The key came from the environment, so it is not written.
    assert!(!text.contains("api_key"), "{text}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&nested), 0o600);
    assert_eq!(mode(nested.parent().unwrap()), 0o700);
}

#[test]
fn configure_keeps_every_setting_it_is_not_given() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let before = std::fs::read_to_string(&context.config).unwrap();
    let output = context.run(&["configure", "--idle-minutes", "45"]);
    assert!(output.status.success(), "{}", render(&output));
    let after = std::fs::read_to_string(&context.config).unwrap();
    assert!(after.contains("idle_timeout_minutes: 45"), "{after}");
    for kept in [
        "test-daemon-token-0123456789abcdef",
        "tiny-test",
        "ssh_key_name: default",
        "access: direct",
    ] {
        assert!(
            before.contains(kept) && after.contains(kept),
            "{kept} lost:\n{after}"
        );
    }
}

#[test]
fn configure_refuses_an_ssh_key_the_account_does_not_have() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["configure", "--ssh-key", "laptop"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        The API key works.
        error: there is no SSH key `laptop` in the Lambda account

        hint: use one of `default`, or add yours at https://cloud.lambda.ai/ssh-keys
    "#);
}

#[test]
fn configure_can_create_the_filesystem() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context.run(&[
        "configure",
        "--filesystem",
        "scratch",
        "--region",
        "us-west-1",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", render(&output));
    let output = context.run(&[
        "configure",
        "--filesystem",
        "scratch",
        "--region",
        "us-west-1",
        "--create-filesystem",
    ]);
    assert!(output.status.success(), "{}", render(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Created filesystem `scratch`"));
}

#[test]
fn configure_with_a_bad_key_exits_4() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context
        .command(&["configure", "--region", "us-west-1"])
        .env("LAMBDA_API_KEY", "bad")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", render(&output));
}

/// The wizard, through a real pseudo-terminal: each answer changes one
/// setting, an empty answer keeps the current value.
#[test]
fn the_wizard_asks_on_a_terminal_and_keeps_empty_answers() {
    use std::io::{Read, Write};
    let context = TestContext::with_sim("partial.yaml", SimConfig::for_tests());
    let pty = nix::pty::openpty(None, None).unwrap();
    let child = context
        .command(&["configure"])
        .stdin(std::process::Stdio::from(pty.slave))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    // API key (keep: the environment has one), SSH key, region (keep),
    // a new filesystem and yes to creating it, model, GPU (keep: automatic),
    // lease hours, idle minutes.
    master
        .write_all(b"\ndefault\n\nscratch\ny\nmistral-7b\n\n2\n20\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("your keys: default"), "{text}");
    assert!(text.contains("Created filesystem `scratch`"), "{text}");
    assert!(text.contains("now `gpu_1x_a10`"), "{text}");
    let config = std::fs::read_to_string(&context.config).unwrap();
    for expected in [
        "ssh_key_name: default",
        "default_region: us-west-1",
        "filesystem_name: scratch",
        "model: mistral-7b",
        "lease_hours: 2",
        "idle_timeout_minutes: 20",
        "token: ",
    ] {
        assert!(config.contains(expected), "{expected} missing:\n{config}");
    }
    // Drain what the terminal echoed, so nothing is left blocking.
    let mut echoed = Vec::new();
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsFd::as_fd(&master),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let _ = master.read_to_end(&mut echoed);
}

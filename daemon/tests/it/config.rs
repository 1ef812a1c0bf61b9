//! `soong-daemon check-config` and start-up config errors, through the real
//! binary: the shipped example passes, every broken fixture fails with a
//! message naming the file and the key, and a world-readable secret file is
//! warned about.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{Policy, TestContext};

fn daemon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_soong-daemon"))
        .args(args)
        .output()
        .unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn check(path: &Path) -> (i32, String, String) {
    let output = daemon(&["check-config", path.to_str().unwrap()]);
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_example_config_passes_check_config() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/daemon.yaml");
    let (code, stdout, stderr) = check(&example);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("is a valid soong-daemon config"),
        "{stdout}"
    );
}

#[test]
fn a_valid_config_passes_check_config() {
    let (code, _, stderr) = check(&fixture("valid.yaml"));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn broken_configs_fail_naming_the_file_and_the_key() {
    for (name, expected) in [
        ("unknown_key.yaml", "unknown key `policy.leese`"),
        ("empty.yaml", "is empty"),
        ("partial.yaml", "missing key `lambda`"),
        (
            "impossible_policy.yaml",
            "`policy.lease` (9h) is longer than `policy.max_lease` (8h)",
        ),
        (
            "bad_duration.yaml",
            "invalid value for `policy.idle_timeout`",
        ),
    ] {
        let (code, stdout, stderr) = check(&fixture(name));
        assert_eq!(code, 1, "{name}: {stdout}{stderr}");
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: expected `{expected}` in {stderr}"
        );
        assert!(stderr.contains(name), "{name}: the file is named: {stderr}");
    }
}

#[test]
fn a_missing_config_file_is_an_error_not_a_default() {
    let output = daemon(&["--config", "/nonexistent/daemon.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read the config file `/nonexistent/daemon.yaml`"),
        "{stderr}"
    );
}

#[test]
fn running_without_a_config_is_a_usage_error() {
    let output = daemon(&[]);
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_world_readable_secret_file_is_warned_about_and_an_empty_one_refused() {
    let ctx = TestContext::new().await;
    let token_file = ctx.dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", crate::support::TOKEN)).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = ctx.config_text(Policy::default(), "").replace(
        &format!("token: {}\n", crate::support::TOKEN),
        &format!("token_file: {}\n", token_file.display()),
    );
    let config = ctx.write_config(&text);
    let daemon = ctx.spawn(&config).await;
    assert_eq!(
        ctx.get("/status").await.status(),
        200,
        "the token is read from the file"
    );
    drop(daemon);
    assert!(
        ctx.log().contains("readable by every user"),
        "{}",
        ctx.log()
    );

    std::fs::write(&token_file, "\n").unwrap();
    let output = daemon_output(&config);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is empty"));
}

fn daemon_output(config: &Path) -> Output {
    daemon(&["--config", config.to_str().unwrap()])
}

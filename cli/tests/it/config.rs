//! Config file errors: each names the file and the key, and says what to do.

use std::os::unix::fs::PermissionsExt;

use crate::common::TestContext;
use crate::soong_snapshot;

#[test]
fn an_unknown_key_is_named_with_the_file() {
    let context = TestContext::new(Some("unknown_key.yaml"));
    soong_snapshot!(context, ["models", "list"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: unknown key `lambda.default_regoin` in the config file `[TEMP]/config.yaml`

        hint: remove `lambda.default_regoin` or fix its spelling; the keys are listed in DESIGN.md §3.1 and `docs/guide/configuration.md`
    "#);
}

#[test]
fn an_empty_file_says_it_is_empty() {
    let context = TestContext::new(Some("empty.yaml"));
    soong_snapshot!(context, ["models", "list"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: the config file `[TEMP]/config.yaml` is empty

        hint: add at least `lambda.api_key` and `lambda.ssh_key_name`, or delete the file and set `LAMBDA_API_KEY`
    "#);
}

#[test]
fn a_partial_file_names_the_missing_setting() {
    let context = TestContext::new(Some("partial.yaml"));
    soong_snapshot!(context, ["available"], @r#"
        success: false
        exit_code: 4
        ----- stdout -----

        ----- stderr -----
        error: no Lambda API key is configured

        hint: run `soong configure`, or set `lambda.api_key` in `[TEMP]/config.yaml` or `LAMBDA_API_KEY` in the environment
    "#);
}

#[test]
fn the_valid_fixture_parses() {
    let context = TestContext::new(Some("valid.yaml"));
    let output = context.run(&["models", "info", "tiny-test"]);
    assert!(
        output.status.success(),
        "{}",
        crate::common::render(&output)
    );
}

#[test]
fn a_bad_value_names_the_key() {
    let context = TestContext::new(None);
    std::fs::write(&context.config, "defaults:\n  lease_hours: 12\n").unwrap();
    soong_snapshot!(context, ["models"], @r#"
        success: false
        exit_code: 1
        ----- stdout -----

        ----- stderr -----
        error: invalid value for `defaults.lease_hours` in the config file `[TEMP]/config.yaml`: must be between 1 and 8

        hint: fix the value in the file; the format is in `docs/guide/configuration.md`
    "#);
}

#[test]
fn models_add_writes_the_config_privately_and_keeps_other_settings() {
    let context = TestContext::new(Some("valid.yaml"));
    let output = context.run(&[
        "models",
        "add",
        "qwen-7b",
        "--hf-path",
        "Qwen/Qwen2.5-7B-Instruct",
        "--params-billions",
        "7.6",
    ]);
    assert!(
        output.status.success(),
        "{}",
        crate::common::render(&output)
    );
    let text = std::fs::read_to_string(&context.config).unwrap();
    assert!(text.contains("qwen-7b"), "{text}");
    assert!(text.contains("ssh_key_name: default"), "{text}");
    assert!(text.contains("tiny-test"), "{text}");
    let mode = std::fs::metadata(&context.config)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let output = context.run(&["models", "remove", "qwen-7b"]);
    assert!(
        output.status.success(),
        "{}",
        crate::common::render(&output)
    );
    assert!(
        !std::fs::read_to_string(&context.config)
            .unwrap()
            .contains("qwen-7b")
    );
}

#[test]
fn the_environment_wins_over_the_file_and_the_file_works_alone() {
    use lambda_sim::SimConfig;
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    // The file's key is the simulator's, and its URL is Lambda's: only
    // `SOONG_API_URL` gets the call to the simulator.
    let output = context
        .command(&["available", "--json"])
        .env_remove("LAMBDA_API_KEY")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        crate::common::render(&output)
    );
    // A wrong key in the environment wins over the file's good one.
    let output = context
        .command(&["available"])
        .env("LAMBDA_API_KEY", "wrong")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        crate::common::render(&output)
    );
}

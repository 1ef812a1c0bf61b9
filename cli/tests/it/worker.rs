//! `soong worker` with a fake `npx` on `PATH` that records each call's
//! argv, stdin, credentials and `wrangler.toml`, and answers like wrangler.
//! Cloudflare cannot be reached here: this tests what soong asks wrangler
//! to do, and that no secret is ever on a command line.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::common::{TestContext, render};

const FAKE_NPX: &str = r#"#!/bin/sh
log="$FAKE_NPX_LOG"
n=$(ls "$log" | grep -c '\.argv$')
printf '%s\n' "$@" > "$log/$n.argv"
cat > "$log/$n.stdin"
printf '%s\n%s\n' "$CLOUDFLARE_API_TOKEN" "$CLOUDFLARE_ACCOUNT_ID" > "$log/$n.env"
[ -f wrangler.toml ] && cp wrangler.toml "$log/$n.wrangler.toml"
case "$*" in
  *"kv namespace list"*)
    if [ -f "$log/kv-created" ]; then
      echo '[{"id":"kv-0123","title":"soong-watchdog-kv"}]'
    else
      echo '[{"id":"other","title":"someone-else"}]'
    fi ;;
  *"kv namespace create"*) touch "$log/kv-created"; echo "Success!" ;;
  *" deploy"*) printf 'Uploaded soong-watchdog\n  https://soong-watchdog.test-account.workers.dev\n  schedule: */5 * * * *\n' ;;
esac
exit 0
"#;

struct Fake {
    log: PathBuf,
    path: String,
}

fn fake_npx(context: &TestContext) -> Fake {
    let bin = context.dir.path().join("fake-bin");
    let log = context.dir.path().join("npx-log");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    let npx = bin.join("npx");
    std::fs::write(&npx, FAKE_NPX).unwrap();
    std::fs::set_permissions(&npx, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Fake { log, path }
}

/// The calls, in order: (argv, stdin, env lines).
fn calls(log: &Path) -> Vec<(Vec<String>, String, String)> {
    let mut out = Vec::new();
    for n in 0.. {
        let Ok(argv) = std::fs::read_to_string(log.join(format!("{n}.argv"))) else {
            break;
        };
        out.push((
            argv.lines().map(str::to_owned).collect(),
            std::fs::read_to_string(log.join(format!("{n}.stdin"))).unwrap(),
            std::fs::read_to_string(log.join(format!("{n}.env"))).unwrap(),
        ));
    }
    out
}

fn with_worker_config(context: &TestContext) {
    let mut config = std::fs::read_to_string(&context.config).unwrap();
    config.push_str(
        "worker:\n  cloudflare_api_token: cf-token-from-config\n  cloudflare_account_id: account-1\n",
    );
    std::fs::write(&context.config, config).unwrap();
}

#[test]
fn deploy_creates_kv_deploys_and_puts_secrets_through_stdin_only() {
    let context = TestContext::new(Some("valid.yaml"));
    with_worker_config(&context);
    let fake = fake_npx(&context);
    let output = context
        .command(&["worker", "deploy", "--json"])
        .env("PATH", &fake.path)
        .env("FAKE_NPX_LOG", &fake.log)
        .output()
        .unwrap();
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    let config = std::fs::read_to_string(&context.config).unwrap();
    let parsed: serde_yaml::Value = serde_yaml::from_str(&config).unwrap();
    let worker = &parsed["worker"];
    assert_eq!(
        worker["url"].as_str(),
        Some("https://soong-watchdog.test-account.workers.dev"),
        "{config}"
    );
    assert_eq!(worker["kv_namespace_id"].as_str(), Some("kv-0123"));
    let worker_secret = worker["secret"].as_str().unwrap().to_owned();
    let admin_token = worker["admin_token"].as_str().unwrap().to_owned();
    assert!(worker_secret.len() >= 43 && admin_token.len() >= 43);

    let calls = calls(&fake.log);
    let wrangler: Vec<String> = calls
        .iter()
        .map(|(argv, _, _)| {
            assert_eq!(argv[0], "--yes");
            assert!(argv[1].starts_with("wrangler@4."), "{argv:?}");
            argv[2..].join(" ")
        })
        .collect();
    assert_eq!(
        wrangler,
        [
            "kv namespace list",
            "kv namespace create soong-watchdog-kv",
            "kv namespace list",
            "deploy",
            "secret put LAMBDA_API_KEY --name soong-watchdog",
            "secret put WORKER_SECRET --name soong-watchdog",
            "secret put ADMIN_TOKEN --name soong-watchdog",
        ]
    );
    // Secrets only on stdin, credentials only in the environment.
    let secrets = [
        "sim-api-key",
        worker_secret.as_str(),
        admin_token.as_str(),
        "cf-token-from-config",
    ];
    for (argv, _, env) in &calls {
        for secret in secrets {
            assert!(!argv.iter().any(|a| a.contains(secret)), "{argv:?}");
        }
        assert_eq!(env, "cf-token-from-config\naccount-1\n");
    }
    assert_eq!(calls[4].1, "sim-api-key");
    assert_eq!(calls[5].1, worker_secret);
    assert_eq!(calls[6].1, admin_token);
    // The deployed config binds the namespace and keeps the cron.
    let toml = std::fs::read_to_string(fake.log.join("3.wrangler.toml")).unwrap();
    assert!(
        toml.contains("binding = \"SOONG_KV\"\nid = \"kv-0123\""),
        "{toml}"
    );
    assert!(toml.contains("crons = [\"*/5 * * * *\"]"), "{toml}");
    assert!(!toml.contains(&worker_secret) && !toml.contains("sim-api-key"));

    // A second deploy reuses the namespace, and the environment's token wins.
    let output = context
        .command(&["worker", "deploy"])
        .env("PATH", &fake.path)
        .env("FAKE_NPX_LOG", &fake.log)
        .env("CLOUDFLARE_API_TOKEN", "cf-token-from-env")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", render(&output));
    let again = crate::worker::calls(&fake.log);
    assert_eq!(again[7].0[2..].join(" "), "kv namespace list");
    assert_eq!(again[8].0[2..].join(" "), "deploy");
    assert!(again[8].2.starts_with("cf-token-from-env\n"));
}

#[test]
fn destroy_removes_secrets_worker_with_its_cron_and_the_namespace() {
    let context = TestContext::new(Some("valid.yaml"));
    let mut config = std::fs::read_to_string(&context.config).unwrap();
    config.push_str("worker:\n  url: https://soong-watchdog.test-account.workers.dev\n  secret: s3cret-for-tests\n  admin_token: admin-for-tests\n  cloudflare_api_token: cf-token\n  kv_namespace_id: kv-0123\n");
    std::fs::write(&context.config, config).unwrap();
    let fake = fake_npx(&context);
    let output = context
        .command(&["worker", "destroy", "-y"])
        .env("PATH", &fake.path)
        .env("FAKE_NPX_LOG", &fake.log)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", render(&output));
    let wrangler: Vec<String> = calls(&fake.log)
        .iter()
        .map(|(argv, _, _)| argv[2..].join(" "))
        .collect();
    assert_eq!(
        wrangler,
        [
            "secret delete LAMBDA_API_KEY --name soong-watchdog",
            "secret delete WORKER_SECRET --name soong-watchdog",
            "secret delete ADMIN_TOKEN --name soong-watchdog",
            "delete --name soong-watchdog --force",
            "kv namespace delete --namespace-id kv-0123 --skip-confirmation",
        ]
    );
    let config = std::fs::read_to_string(&context.config).unwrap();
    assert!(!config.contains("workers.dev"), "{config}");
    assert!(!config.contains("kv-0123"), "{config}");
}

#[test]
fn without_a_cloudflare_token_nothing_runs_and_the_login_is_not_used() {
    let context = TestContext::new(Some("valid.yaml"));
    let fake = fake_npx(&context);
    let output = context
        .command(&["worker", "deploy"])
        .env("PATH", &fake.path)
        .env("FAKE_NPX_LOG", &fake.log)
        .output()
        .unwrap();
    let text = render(&output);
    assert_eq!(output.status.code(), Some(4), "{text}");
    assert!(
        text.contains("no Cloudflare API token is configured"),
        "{text}"
    );
    assert!(calls(&fake.log).is_empty());
}

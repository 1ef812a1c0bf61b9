//! `soong worker deploy|status|logs|destroy`: the watchdog worker of
//! `worker/` on Cloudflare, driven through `npx wrangler@<pinned version>`.
//!
//! The worker's sources are compiled into this binary (the files below,
//! checked against the checkout by a drift test) and written to a private
//! temporary directory for each run, so an installed soong deploys exactly
//! the worker it was built with, and no `wrangler.toml` of the current
//! directory is ever picked up.
//!
//! Credentials come from the soong config only (`worker.cloudflare_api_token`,
//! `worker.cloudflare_account_id`), or `CLOUDFLARE_API_TOKEN` /
//! `CLOUDFLARE_ACCOUNT_ID` in the environment, which win, as
//! `LAMBDA_API_KEY` does. An API token is required: wrangler prefers it to
//! whatever `wrangler login` left on this machine. Secrets go to `wrangler
//! secret put NAME` on its stdin, never on a command line.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use soong_protocol::config::Secret;

use crate::args::{WorkerAction, WorkerArgs};
use crate::exit::{ExitStatus, UserError};
use crate::output::Printer;
use crate::settings::{ConfigFile, Settings, WorkerSection, generate_token};

/// `CLOUDFLARE_API_TOKEN`: wins over `worker.cloudflare_api_token`.
pub const ENV_CLOUDFLARE_API_TOKEN: &str = "CLOUDFLARE_API_TOKEN";
/// `CLOUDFLARE_ACCOUNT_ID`: wins over `worker.cloudflare_account_id`.
pub const ENV_CLOUDFLARE_ACCOUNT_ID: &str = "CLOUDFLARE_ACCOUNT_ID";
/// The worker's name when the config gives none.
pub const DEFAULT_NAME: &str = "soong-watchdog";

/// The worker's files, as compiled in: (path under `worker/`, contents).
pub const FILES: &[(&str, &str)] = &[
    ("package.json", include_str!("../../../worker/package.json")),
    (
        "tsconfig.json",
        include_str!("../../../worker/tsconfig.json"),
    ),
    (
        "wrangler.toml",
        include_str!("../../../worker/wrangler.toml"),
    ),
    (
        "src/crypto.ts",
        include_str!("../../../worker/src/crypto.ts"),
    ),
    ("src/env.ts", include_str!("../../../worker/src/env.ts")),
    (
        "src/events.ts",
        include_str!("../../../worker/src/events.ts"),
    ),
    (
        "src/heartbeat.ts",
        include_str!("../../../worker/src/heartbeat.ts"),
    ),
    ("src/http.ts", include_str!("../../../worker/src/http.ts")),
    ("src/index.ts", include_str!("../../../worker/src/index.ts")),
    (
        "src/lambda.ts",
        include_str!("../../../worker/src/lambda.ts"),
    ),
    ("src/rules.ts", include_str!("../../../worker/src/rules.ts")),
    (
        "src/scheduled.ts",
        include_str!("../../../worker/src/scheduled.ts"),
    ),
    ("src/store.ts", include_str!("../../../worker/src/store.ts")),
];

/// The secrets the worker needs (`worker/README.md`).
const SECRET_NAMES: [&str; 3] = ["LAMBDA_API_KEY", "WORKER_SECRET", "ADMIN_TOKEN"];

/// Runs `soong worker …`.
pub async fn run(
    printer: &Printer,
    settings: &Settings,
    args: &WorkerArgs,
) -> anyhow::Result<ExitStatus> {
    match args.action {
        WorkerAction::Deploy => deploy(printer, settings).await,
        WorkerAction::Status => status(printer, settings).await,
        WorkerAction::Logs => logs(settings),
        WorkerAction::Destroy => destroy(printer, settings),
    }
}

/// The pinned wrangler (`devDependencies.wrangler` of `package.json`).
fn wrangler_version() -> String {
    serde_json::from_str::<serde_json::Value>(FILES[0].1)
        .ok()
        .and_then(|p| p["devDependencies"]["wrangler"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "4".to_owned())
}

/// Cloudflare credentials: the environment wins over the config.
struct Cloudflare {
    token: Secret,
    account_id: Option<String>,
}

fn cloudflare(settings: &Settings) -> anyhow::Result<Cloudflare> {
    let worker = settings.config.worker.as_ref();
    let token = std::env::var(ENV_CLOUDFLARE_API_TOKEN)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(Secret::new)
        .or_else(|| worker.and_then(|w| w.cloudflare_api_token.clone()))
        .ok_or_else(|| {
            UserError::new("no Cloudflare API token is configured")
                .hint(format!(
                    "create one with the \"Edit Cloudflare Workers\" template (it covers Workers, KV and cron) and set `worker.cloudflare_api_token` in `{}`, or `{ENV_CLOUDFLARE_API_TOKEN}`; soong never uses a `wrangler login` session",
                    settings.config_path.display()
                ))
                .status(ExitStatus::Auth)
        })?;
    let account_id = std::env::var(ENV_CLOUDFLARE_ACCOUNT_ID)
        .ok()
        .filter(|a| !a.trim().is_empty())
        .or_else(|| worker.and_then(|w| w.cloudflare_account_id.clone()));
    Ok(Cloudflare { token, account_id })
}

/// A private directory with the worker's files, where wrangler runs.
struct Workdir {
    dir: tempfile::TempDir,
    cloudflare: Cloudflare,
}

impl Workdir {
    fn new(cloudflare: Cloudflare) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("soong-worker-")
            .tempdir()
            .context("cannot create a directory for the worker")?;
        for (path, text) in FILES {
            let file = dir.path().join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&file, text)?;
        }
        Ok(Self { dir, cloudflare })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `npx --yes wrangler@<pinned> ARGS`, in the directory, with the
    /// credentials in the environment (never in the arguments).
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("npx");
        command
            .arg("--yes")
            .arg(format!("wrangler@{}", wrangler_version()))
            .args(args)
            .current_dir(self.path())
            .env(ENV_CLOUDFLARE_API_TOKEN, self.cloudflare.token.expose())
            .env("WRANGLER_SEND_METRICS", "false");
        match &self.cloudflare.account_id {
            Some(account) => command.env(ENV_CLOUDFLARE_ACCOUNT_ID, account),
            None => command.env_remove(ENV_CLOUDFLARE_ACCOUNT_ID),
        };
        command
    }

    /// Runs wrangler and returns its stdout; fails with its stderr.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let what = format!("wrangler {}", args.join(" "));
        let mut child = self
            .command(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                anyhow::Error::new(
                    UserError::new(format!("cannot run `npx` ({error})")).hint(
                        "install Node.js 22 or newer (it brings `npx`); soong runs `npx wrangler` to reach Cloudflare",
                    ),
                )
            })?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input.write_all(text.as_bytes())?;
            // Dropping `input` closes the pipe: wrangler reads to the end.
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stdout = String::from_utf8_lossy(&output.stdout);
            anyhow::bail!(
                "`{what}` failed ({}): {}",
                output.status,
                last_lines(if stderr.trim().is_empty() {
                    &stdout
                } else {
                    &stderr
                })
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

/// The worker section, created or completed with fresh secrets.
fn completed(section: Option<&WorkerSection>) -> WorkerSection {
    let mut worker = section.cloned().unwrap_or_default();
    if worker.secret.is_none() {
        worker.secret = Some(Secret::new(generate_token()));
    }
    if worker.admin_token.is_none() {
        worker.admin_token = Some(Secret::new(generate_token()));
    }
    worker
}

fn name_of(worker: Option<&WorkerSection>) -> String {
    worker
        .and_then(|w| w.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NAME.to_owned())
}

/// Writes the worker section into the config file, keeping the rest.
fn save_worker(settings: &Settings, worker: &WorkerSection) -> anyhow::Result<()> {
    let mut config = ConfigFile::load(&settings.config_path)?.unwrap_or_default();
    config.worker = Some(worker.clone());
    config.save(&settings.config_path)?;
    Ok(())
}

/// The id of the KV namespace titled `title`, from `wrangler kv namespace list`.
fn find_namespace(listing: &str, title: &str) -> anyhow::Result<Option<String>> {
    let start = listing.find('[').unwrap_or(0);
    let namespaces: Vec<serde_json::Value> = serde_json::from_str(listing[start..].trim())
        .context("cannot read `wrangler kv namespace list`")?;
    Ok(namespaces
        .iter()
        .find(|n| n["title"].as_str() == Some(title))
        .and_then(|n| n["id"].as_str().map(str::to_owned)))
}

/// The worker's `wrangler.toml` with its name, KV namespace id and API URL.
fn wrangler_toml(name: &str, kv_id: &str, api_url: &str) -> String {
    let mut out = String::new();
    for line in FILES[2].1.lines() {
        if line.starts_with("name = ") {
            let _ = writeln!(out, "name = {}", toml_string(name));
        } else if line.starts_with("LAMBDA_API_URL = ") {
            let _ = writeln!(out, "LAMBDA_API_URL = {}", toml_string(api_url));
        } else if line.trim() == "binding = \"SOONG_KV\"" {
            out.push_str(line);
            out.push('\n');
            let _ = writeln!(out, "id = {}", toml_string(kv_id));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `https://….workers.dev` URL in wrangler's deploy output.
fn deployed_url(output: &str) -> Option<String> {
    output
        .split_whitespace()
        .find(|word| word.starts_with("https://") && word.contains(".workers.dev"))
        .map(|url| url.trim_end_matches(['.', ',', ')']).to_owned())
}

async fn health(url: &str) -> Result<bool, reqwest::Error> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let response = http
        .get(format!("{}/health", url.trim_end_matches('/')))
        .send()
        .await?;
    Ok(response.status().is_success())
}

async fn deploy(printer: &Printer, settings: &Settings) -> anyhow::Result<ExitStatus> {
    let api_key = settings.require_api_key()?;
    let cloudflare = cloudflare(settings)?;
    let mut worker = completed(settings.config.worker.as_ref());
    // Saved first: generated secrets must outlive a failed deploy.
    save_worker(settings, &worker)?;
    let name = name_of(Some(&worker));
    let work = Workdir::new(cloudflare)?;

    let title = format!("{name}-kv");
    let listing = work.run(&["kv", "namespace", "list"], None)?;
    let known = worker
        .kv_namespace_id
        .clone()
        .filter(|id| listing.contains(id.as_str()));
    let kv_id = if let Some(id) = known.or(find_namespace(&listing, &title)?) {
        id
    } else {
        printer.info(format!("Creating the KV namespace `{title}`."));
        work.run(&["kv", "namespace", "create", &title], None)?;
        let listing = work.run(&["kv", "namespace", "list"], None)?;
        find_namespace(&listing, &title)?.ok_or_else(|| {
            anyhow::anyhow!("the KV namespace `{title}` was created but is not listed")
        })?
    };
    worker.kv_namespace_id = Some(kv_id.clone());
    save_worker(settings, &worker)?;
    std::fs::write(
        work.path().join("wrangler.toml"),
        wrangler_toml(&name, &kv_id, &settings.api_url),
    )?;

    printer.info(format!(
        "Deploying `{name}` (cron every 5 minutes, KV `{title}`)."
    ));
    let output = work.run(&["deploy"], None)?;
    let url = deployed_url(&output).or_else(|| worker.url.clone());
    for secret in SECRET_NAMES {
        let value = match secret {
            "LAMBDA_API_KEY" => api_key.expose().to_owned(),
            "WORKER_SECRET" => worker
                .secret
                .as_ref()
                .map(|t| t.expose().to_owned())
                .unwrap_or_default(),
            _ => worker
                .admin_token
                .as_ref()
                .map(|t| t.expose().to_owned())
                .unwrap_or_default(),
        };
        work.run(&["secret", "put", secret, "--name", &name], Some(&value))?;
    }
    worker.url.clone_from(&url);
    save_worker(settings, &worker)?;
    let healthy = match &url {
        Some(url) => health(url).await.ok(),
        None => None,
    };
    if printer.json() {
        printer.json_value(&json!({
            "name": name,
            "url": url,
            "kv_namespace_id": kv_id,
            "secrets": SECRET_NAMES,
            "healthy": healthy,
        }));
        return Ok(ExitStatus::Success);
    }
    printer.info(format!(
        "Deployed `{name}`{} with its secrets ({}); the config now has its URL and admin token.",
        url.as_deref()
            .map(|u| format!(" at {u}"))
            .unwrap_or_default(),
        SECRET_NAMES.join(", ")
    ));
    match healthy {
        Some(true) => printer.info("It answers `/health`."),
        Some(false) => printer.warn(
            "it does not report healthy yet (its first cron run is up to 5 minutes away); `soong worker status` checks again",
        ),
        None => printer.warn("its `/health` could not be reached; `soong worker status` checks again"),
    }
    printer.info("Instances launched from now on send it heartbeats.");
    Ok(ExitStatus::Success)
}

async fn status(printer: &Printer, settings: &Settings) -> anyhow::Result<ExitStatus> {
    let worker = settings.config.worker.as_ref().ok_or_else(|| {
        UserError::new("no worker is configured").hint("`soong worker deploy` deploys one")
    })?;
    let name = name_of(Some(worker));
    let healthy = match worker.url() {
        Some(url) => Some(health(url).await.map_err(|e| e.to_string())),
        None => None,
    };
    let deployments = match cloudflare(settings) {
        Ok(cloudflare) => Some(
            Workdir::new(cloudflare)?
                .run(&["deployments", "list", "--name", &name], None)
                .map_err(|e| format!("{e:#}")),
        ),
        Err(_) => None,
    };
    if printer.json() {
        printer.json_value(&json!({
            "name": name,
            "url": worker.url(),
            "healthy": healthy.as_ref().and_then(|h| h.as_ref().ok()),
            "health_error": healthy.as_ref().and_then(|h| h.as_ref().err()),
            "deployments": deployments.as_ref().and_then(|d| d.as_ref().ok()),
        }));
        return Ok(ExitStatus::Success);
    }
    printer.data(format!(
        "Worker:  {name}\nURL:     {}\nHealth:  {}",
        worker.url().unwrap_or("(not deployed)"),
        match &healthy {
            Some(Ok(true)) => "ok".to_owned(),
            Some(Ok(false)) => printer.red_bold("unhealthy (see `soong worker logs`)"),
            Some(Err(error)) => printer.red_bold(&format!("unreachable: {error}")),
            None => "-".to_owned(),
        }
    ));
    match deployments {
        Some(Ok(text)) => printer.data(text.trim_end()),
        Some(Err(error)) => printer.warn(error),
        None => printer.info("(no Cloudflare API token: deployments not listed)"),
    }
    Ok(ExitStatus::Success)
}

fn logs(settings: &Settings) -> anyhow::Result<ExitStatus> {
    let worker = settings.config.worker.as_ref();
    let name = name_of(worker);
    let work = Workdir::new(cloudflare(settings)?)?;
    let status = work
        .command(&["tail", &name, "--format", "pretty"])
        .status()
        .context("cannot run `npx wrangler tail`")?;
    Ok(if status.success() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn destroy(printer: &Printer, settings: &Settings) -> anyhow::Result<ExitStatus> {
    let Some(mut worker) = settings.config.worker.clone() else {
        return Err(UserError::new("no worker is configured")
            .hint("nothing to destroy")
            .into());
    };
    let name = name_of(Some(&worker));
    let cloudflare = cloudflare(settings)?;
    if !crate::prompt::confirm(
        settings,
        &format!("Remove the worker `{name}` with its cron trigger, secrets and KV namespace?"),
        "destroy the worker",
    )? {
        return Err(UserError::new("not destroyed").into());
    }
    let work = Workdir::new(cloudflare)?;
    // Secrets first, then the script (which takes its cron trigger with
    // it), then the data.
    for secret in SECRET_NAMES {
        if let Err(error) = work.run(&["secret", "delete", secret, "--name", &name], None) {
            printer.verbose(format!("{error:#}"));
        }
    }
    work.run(&["delete", "--name", &name, "--force"], None)?;
    let kv_id = match worker.kv_namespace_id.clone() {
        Some(id) => Some(id),
        None => find_namespace(
            &work.run(&["kv", "namespace", "list"], None)?,
            &format!("{name}-kv"),
        )?,
    };
    if let Some(id) = &kv_id {
        work.run(
            &[
                "kv",
                "namespace",
                "delete",
                "--namespace-id",
                id,
                "--skip-confirmation",
            ],
            None,
        )?;
    }
    worker.url = None;
    worker.kv_namespace_id = None;
    save_worker(settings, &worker)?;
    if printer.json() {
        printer.json_value(&json!({"name": name, "destroyed": true, "kv_namespace_id": kv_id}));
    } else {
        printer.info(format!(
            "Removed `{name}`: its secrets, the worker with its cron trigger{}. Instances launched from now on send no heartbeats.",
            kv_id
                .map(|id| format!(", and the KV namespace {id}"))
                .unwrap_or_default()
        ));
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_wrangler_toml_pins_name_namespace_and_api() {
        let toml = wrangler_toml("my-dog", "abc123", "http://127.0.0.1:9/api/v1");
        assert!(toml.contains("name = \"my-dog\"\n"), "{toml}");
        assert!(
            toml.contains("binding = \"SOONG_KV\"\nid = \"abc123\"\n"),
            "{toml}"
        );
        assert!(
            toml.contains("LAMBDA_API_URL = \"http://127.0.0.1:9/api/v1\"\n"),
            "{toml}"
        );
        assert!(toml.contains("crons = [\"*/5 * * * *\"]"), "{toml}");
        assert_eq!(toml_string("a\"b\\"), "\"a\\\"b\\\\\"");
    }

    #[test]
    fn the_url_is_read_from_wrangler_output() {
        let output = "Uploaded soong-watchdog (2.1 sec)\nDeployed soong-watchdog triggers (0.4 sec)\n  https://soong-watchdog.me.workers.dev\n  schedule: */5 * * * *\n";
        assert_eq!(
            deployed_url(output).as_deref(),
            Some("https://soong-watchdog.me.workers.dev")
        );
        assert_eq!(
            find_namespace(
                "[{\"id\":\"x1\",\"title\":\"soong-watchdog-kv\"}]",
                "soong-watchdog-kv"
            )
            .unwrap()
            .as_deref(),
            Some("x1")
        );
    }

    #[test]
    fn the_embedded_worker_is_the_checkout() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker");
        for (path, text) in FILES {
            let on_disk = std::fs::read_to_string(root.join(path)).unwrap();
            assert_eq!(&on_disk, text, "{path}");
        }
        let mut sources: Vec<String> = std::fs::read_dir(root.join("src"))
            .unwrap()
            .flatten()
            .map(|e| format!("src/{}", e.file_name().to_string_lossy()))
            .collect();
        sources.sort();
        let embedded: Vec<&str> = FILES
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| p.starts_with("src/"))
            .collect();
        assert_eq!(
            sources, embedded,
            "worker/src changed: update `FILES` in cli/src/commands/worker.rs"
        );
    }
}

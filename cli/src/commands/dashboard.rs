//! `soong dashboard`: the daemon's page (`GET /`) in the browser, with the
//! token in the URL fragment (`#token=…`), which browsers never send to the
//! server; the page moves it to `sessionStorage` and drops the fragment.
//!
//! Over SSH the page is reached through the instance's soong tunnel, which
//! is started if none runs (and keeps running for the browser; `soong
//! tunnel stop` ends it). The browser is not given the URL on its command
//! line, where any local user could read the token in `/proc`: soong writes
//! a private (0600) page that redirects to it and opens that file instead.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::args::{DashboardArgs, TunnelArgs};
use crate::exit::{ExitStatus, UserError};
use crate::instances;
use crate::output::Printer;
use crate::settings::{Access, Settings};

/// `BROWSER`: the program that opens the dashboard (else `xdg-open` or
/// `open`).
pub const ENV_BROWSER: &str = "BROWSER";

/// Runs `soong dashboard`.
pub async fn run(
    printer: &Printer,
    settings: &Settings,
    args: &DashboardArgs,
) -> anyhow::Result<ExitStatus> {
    let token = settings.require_token()?;
    let client = settings.client()?;
    let instance = instances::choose(settings, &client, "use").await?;
    let base = match settings.config.status_daemon.access {
        Access::Direct => {
            let ip = instance.ip.as_deref().ok_or_else(|| {
                UserError::new(format!("instance `{}` has no IP address yet", instance.id))
            })?;
            format!("http://{ip}:{}", settings.config.status_daemon.port)
        }
        Access::Ssh => {
            let tunnel_args = TunnelArgs {
                action: None,
                sglang_port: None,
                n8n_port: None,
                status_port: None,
            };
            let (record, new) =
                crate::commands::tunnel::ensure(printer, settings, &tunnel_args, &instance).await?;
            if new {
                printer.info(format!(
                    "Started a tunnel to `{}` (ssh PID {}); `soong tunnel stop` ends it.",
                    record.instance_name, record.pid
                ));
            }
            let local = record.local("status").expect("always forwarded");
            format!("http://{local}")
        }
    };
    // URL-safe base64 needs no escaping in a fragment.
    let url = format!("{base}/#token={}", token.expose());
    let browser = if args.print { None } else { browser() };
    let opened = match browser {
        Some(program) => {
            let page = redirect_page(settings, &url)?;
            let status = std::process::Command::new(&program)
                .arg(&page)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            match status {
                Ok(status) if status.success() => true,
                _ => {
                    printer.warn(format!("`{program}` could not open the dashboard"));
                    false
                }
            }
        }
        None => false,
    };
    if printer.json() {
        printer.json_value(&json!({"url": url, "opened": opened}));
    } else if opened {
        printer.info(format!(
            "Opened the dashboard of `{}` ({base}/) in the browser.",
            instance.name.as_deref().unwrap_or(&instance.id)
        ));
    } else {
        printer.data(&url);
        printer.info(
            "Open this URL in a browser; it holds the daemon's token, so keep it to yourself.",
        );
    }
    Ok(ExitStatus::Success)
}

/// The browser to run: `BROWSER`, else `xdg-open` (with a display) or
/// macOS's `open`, when on `PATH`.
fn browser() -> Option<String> {
    if let Some(program) = std::env::var(ENV_BROWSER)
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        return Some(program);
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    if cfg!(target_os = "macos") && on_path("open") {
        return Some("open".to_owned());
    }
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    (display && on_path("xdg-open")).then(|| "xdg-open".to_owned())
}

/// Writes `<state dir>/dashboard.html` (0600), a page that redirects to
/// `url`, and returns its path.
fn redirect_page(settings: &Settings, url: &str) -> anyhow::Result<PathBuf> {
    let dir = crate::settings::state_dir(settings);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("dashboard.html");
    write_private(&path, &page(url))?;
    Ok(path)
}

fn page(url: &str) -> String {
    let escaped = url
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<meta name=\"referrer\" content=\"no-referrer\">\n<meta http-equiv=\"refresh\" content=\"0;url={escaped}\">\n<title>soong dashboard</title>\n<p>Opening the <a href=\"{escaped}\">soong dashboard</a>…</p>\n"
    )
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    out.write_all(text.as_bytes())
}

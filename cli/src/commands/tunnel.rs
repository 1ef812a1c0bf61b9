//! `soong tunnel [start|stop|status]`: a background `ssh -N` forwarding
//! SGLang, n8n and the daemon of one soong instance to local ports, with
//! the pinned host key, `ExitOnForwardFailure` and keep-alives. The record
//! that tracks it is described in [`crate::tunnel`].

use std::fmt::Write as _;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use crate::args::{TunnelAction, TunnelArgs};
use crate::exit::{ExitStatus, UserError};
use crate::instances;
use crate::output::Printer;
use crate::settings::Settings;
use crate::ssh::{self, SshError, Target};
use crate::tunnel::{self, PortForward, Record};

/// How long ssh may take to log in and open its forwards.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `soong tunnel`.
pub async fn run(
    printer: &Printer,
    settings: &Settings,
    args: &TunnelArgs,
) -> anyhow::Result<ExitStatus> {
    match args.action.unwrap_or(TunnelAction::Start) {
        TunnelAction::Start => start(printer, settings, args).await,
        TunnelAction::Stop => stop(printer, settings),
        TunnelAction::Status => status(printer, settings).await,
    }
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The local port for one forward: the one asked for (which must be free),
/// else the usual one, else any free one.
fn local_port(
    printer: &Printer,
    what: &str,
    asked: Option<u16>,
    usual: u16,
) -> anyhow::Result<u16> {
    if let Some(port) = asked {
        if port_is_free(port) {
            return Ok(port);
        }
        return Err(
            UserError::new(format!("local port {port} for {what} is in use"))
                .hint("choose another port, or leave the flag out to get a free one")
                .status(ExitStatus::Usage)
                .into(),
        );
    }
    if port_is_free(usual) {
        return Ok(usual);
    }
    let port = ssh::free_local_port()?;
    printer.info(format!(
        "Local port {usual} is in use; {what} is forwarded to {port} instead."
    ));
    Ok(port)
}

fn describe(record: &Record) -> String {
    let mut text = format!(
        "Tunnel to `{}` (ssh PID {}):",
        record.instance_name, record.pid
    );
    for forward in &record.forwards {
        let _ = write!(
            text,
            "\n  {:<7} http://127.0.0.1:{} → the instance's port {}",
            forward.name, forward.local, forward.remote
        );
    }
    text
}

async fn start(
    printer: &Printer,
    settings: &Settings,
    args: &TunnelArgs,
) -> anyhow::Result<ExitStatus> {
    let client = settings.client()?;
    let instance = instances::choose(settings, &client, "use").await?;
    let (record, new) = ensure(printer, settings, args, &instance).await?;
    if printer.json() {
        printer.json_value(&json!(record));
    } else if new {
        printer.info(format!(
            "{}\n`soong tunnel status` checks the forwards; `soong tunnel stop` ends the tunnel.",
            describe(&record)
        ));
    } else {
        printer.info(format!(
            "{}\n(already running; `soong tunnel stop` ends it)",
            describe(&record)
        ));
    }
    Ok(ExitStatus::Success)
}

/// The live tunnel to `instance`, started if there is none; true when it
/// was started now.
pub async fn ensure(
    printer: &Printer,
    settings: &Settings,
    args: &TunnelArgs,
    instance: &lambda_cloud::Instance,
) -> anyhow::Result<(Record, bool)> {
    if let Some(record) = tunnel::load(settings, &instance.id) {
        if record.alive() {
            return Ok((record, false));
        }
        // Its ssh is gone (or the PID now belongs to another process).
        printer.verbose(format!(
            "removing the stale record of ssh PID {}",
            record.pid
        ));
        tunnel::remove(settings, &instance.id);
    }
    let target = Target::for_instance(settings, instance)?;
    let daemon_port = settings.config.status_daemon.port;
    let wanted = [
        ("sglang", "SGLang", args.sglang_port, 8000),
        ("n8n", "n8n", args.n8n_port, 5678),
        ("status", "the soong daemon", args.status_port, daemon_port),
    ];
    let mut forwards = Vec::new();
    for (name, what, asked, remote) in wanted {
        let local = local_port(printer, what, asked, remote)?;
        if forwards.iter().any(|f: &PortForward| f.local == local) {
            return Err(
                UserError::new(format!("local port {local} is given to two forwards"))
                    .status(ExitStatus::Usage)
                    .into(),
            );
        }
        forwards.push(PortForward {
            name: name.to_owned(),
            local,
            remote,
        });
    }
    // A port found free may be taken before ssh binds it; then the ports
    // not given on the command line are chosen again.
    let mut attempt = 0;
    let record = loop {
        attempt += 1;
        match open(settings, &instance.id, &target, forwards.clone()).await {
            Ok(record) => break record,
            Err(SshError::Failed { message, .. })
                if attempt < 3 && message.contains("Address already in use") =>
            {
                printer.verbose(format!("a local port was taken meanwhile: {message}"));
                for (forward, (_, _, asked, _)) in forwards.iter_mut().zip(wanted) {
                    if asked.is_none() {
                        forward.local = ssh::free_local_port()?;
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
    };
    Ok((record, true))
}

/// Starts the ssh of a tunnel, records it, and waits for its forwards.
async fn open(
    settings: &Settings,
    instance_id: &str,
    target: &Target,
    forwards: Vec<PortForward>,
) -> Result<Record, SshError> {
    let io = |error: std::io::Error| SshError::KnownHosts {
        file: tunnel::records_dir(settings),
        source: error,
    };
    let dir = tunnel::records_dir(settings);
    std::fs::create_dir_all(&dir).map_err(io)?;
    let log_path = dir.join(format!(
        "{}.log",
        instance_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    ));
    let log = std::fs::File::create(&log_path).map_err(io)?;
    let mut command = std::process::Command::new("ssh");
    command.args([
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=3",
        "-o",
        "ConnectTimeout=15",
    ]);
    for forward in &forwards {
        command.arg("-L").arg(format!(
            "127.0.0.1:{}:127.0.0.1:{}",
            forward.local, forward.remote
        ));
    }
    command
        .args(target.options())
        .arg("--")
        .arg(&target.ip)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: a Ctrl-C in this terminal is not for it.
        .process_group(0);
    let mut child = command.spawn().map_err(SshError::Spawn)?;
    let pid = child.id();
    let record = Record {
        instance_id: instance_id.to_owned(),
        instance_name: target.name.clone(),
        pid,
        start_ticks: tunnel::start_ticks(pid).unwrap_or_default(),
        started_at: OffsetDateTime::now_utc().unix_timestamp(),
        forwards,
    };
    // Recorded before waiting: whatever happens to this process, the
    // tunnel can be found and stopped.
    tunnel::save(settings, &record).map_err(io)?;
    let status_local = record.local("status").expect("always forwarded");
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            tunnel::remove(settings, instance_id);
            let mut message = String::new();
            if let Ok(mut file) = std::fs::File::open(&log_path) {
                let _ = file.read_to_string(&mut message);
            }
            return Err(SshError::Failed {
                destination: target.destination(),
                message: message.trim().replace('\n', " / "),
            });
        }
        // ssh opens its listeners only after the host key check and login.
        if ssh::answers(status_local, Duration::from_millis(200)).await {
            return Ok(record);
        }
        if tokio::time::Instant::now() >= deadline {
            tunnel::terminate(&record);
            tunnel::remove(settings, instance_id);
            return Err(SshError::Timeout(target.destination()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The records a command about existing tunnels acts on: the one of
/// `--instance` (by id or name), else all.
fn selected(settings: &Settings) -> Vec<(std::path::PathBuf, Option<Record>)> {
    let all = tunnel::load_all(settings);
    match &settings.instance {
        Some(wanted) => all
            .into_iter()
            .filter(|(_, record)| {
                record
                    .as_ref()
                    .is_some_and(|r| &r.instance_id == wanted || &r.instance_name == wanted)
            })
            .collect(),
        None => all,
    }
}

fn stop(printer: &Printer, settings: &Settings) -> anyhow::Result<ExitStatus> {
    let records = selected(settings);
    if records.is_empty() {
        printer.info("No soong tunnel is running.");
        if printer.json() {
            printer.json_value(&json!([]));
        }
        return Ok(ExitStatus::Success);
    }
    let mut stopped = Vec::new();
    for (path, record) in records {
        let Some(record) = record else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let was_running = tunnel::terminate(&record);
        if was_running && record.alive() {
            return Err(UserError::new(format!(
                "ssh PID {} (the tunnel to `{}`) did not end",
                record.pid, record.instance_name
            ))
            .hint(format!("end it with `kill {}`", record.pid))
            .into());
        }
        tunnel::remove(settings, &record.instance_id);
        if was_running {
            printer.info(format!(
                "Stopped the tunnel to `{}` (ssh PID {}).",
                record.instance_name, record.pid
            ));
        } else {
            printer.info(format!(
                "The tunnel to `{}` had already ended; its record is removed.",
                record.instance_name
            ));
        }
        stopped.push(json!({
            "instance_id": record.instance_id,
            "instance_name": record.instance_name,
            "pid": record.pid,
            "was_running": was_running,
        }));
    }
    if printer.json() {
        printer.json_value(&json!(stopped));
    }
    Ok(ExitStatus::Success)
}

/// The path each forward's service answers on.
fn probe_path(name: &str) -> &'static str {
    match name {
        "n8n" => "/healthz",
        _ => "/health",
    }
}

async fn status(printer: &Printer, settings: &Settings) -> anyhow::Result<ExitStatus> {
    let records = selected(settings);
    let mut rows = Vec::new();
    let mut shown = Vec::new();
    for (_, record) in records {
        let Some(record) = record else { continue };
        let alive = record.alive();
        let mut forwards = Vec::new();
        for forward in &record.forwards {
            let local = std::net::SocketAddr::from(([127, 0, 0, 1], forward.local));
            let answers = alive && tunnel::answers_http(local, probe_path(&forward.name)).await;
            rows.push(vec![
                record.instance_name.clone(),
                if alive {
                    record.pid.to_string()
                } else {
                    "ended".to_owned()
                },
                forward.name.clone(),
                format!("127.0.0.1:{}", forward.local),
                forward.remote.to_string(),
                if answers {
                    "yes".to_owned()
                } else {
                    printer.red_bold("no")
                },
            ]);
            forwards.push(json!({
                "name": forward.name,
                "local": forward.local,
                "remote": forward.remote,
                "answers": answers,
            }));
        }
        shown.push(json!({
            "instance_id": record.instance_id,
            "instance_name": record.instance_name,
            "pid": record.pid,
            "running": alive,
            "started_at": record.started_at,
            "forwards": forwards,
        }));
    }
    if printer.json() {
        printer.json_value(&json!(shown));
    } else if rows.is_empty() {
        printer.info("No soong tunnel. `soong tunnel start` starts one.");
    } else {
        printer.data(printer.table(
            &[
                "INSTANCE", "SSH PID", "FORWARD", "LOCAL", "REMOTE", "ANSWERS",
            ],
            rows,
        ));
    }
    Ok(ExitStatus::Success)
}

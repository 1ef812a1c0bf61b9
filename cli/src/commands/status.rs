//! `soong status`: one list call, then one daemon call per soong instance,
//! in parallel with a short timeout, so a dead daemon costs seconds, not
//! minutes. A daemon that does not answer is shown loudly: it means nothing
//! but the hard deadline (and the watchdog, if deployed) stops the instance.

use std::time::Duration;

use anyhow::Context as _;
use lambda_cloud::{Instance, InstanceStatus};
use serde_json::json;
use soong_protocol::api::{DaemonState, StatusResponse};
use time::OffsetDateTime;

use crate::commands::start::clock;
use crate::daemon_client::{DaemonClient, DaemonError};
use crate::exit::ExitStatus;
use crate::instances;
use crate::output::{Printer, dollars, human_duration};
use crate::settings::Settings;

/// How long one daemon may take to answer `status`.
const DAEMON_TIMEOUT: Duration = Duration::from_secs(3);

/// One instance with what its daemon said.
#[derive(Debug)]
pub struct Row {
    /// The instance, from the API.
    pub instance: Instance,
    /// The daemon's answer, or why there is none (`None`: not asked,
    /// because the instance is not running).
    pub daemon: Option<Result<StatusResponse, DaemonError>>,
}

/// Collects the rows: soong's instances and their daemons' answers.
pub async fn collect(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let client = settings.client()?;
    let listed = client
        .list_instances()
        .await
        .context("cannot list instances")?;
    let token = settings.config.status_daemon.token.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let managed: Vec<Instance> = listed.into_iter().filter(instances::is_managed).collect();
    for (index, instance) in managed.iter().enumerate() {
        if !matches!(
            instance.status,
            InstanceStatus::Active | InstanceStatus::Unhealthy
        ) {
            continue;
        }
        let Some(token) = token.clone() else { continue };
        let settings = settings.clone();
        let instance = instance.clone();
        tasks.spawn(async move {
            let daemon =
                DaemonClient::for_instance(&settings, &token, &instance, DAEMON_TIMEOUT).await;
            let answer = match daemon {
                Ok(daemon) => daemon.status().await,
                Err(error) => Err(error),
            };
            (index, answer)
        });
    }
    let mut rows: Vec<Row> = managed
        .into_iter()
        .map(|instance| Row {
            instance,
            daemon: None,
        })
        .collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, answer)) = joined {
            rows[index].daemon = Some(answer);
        }
    }
    Ok(rows)
}

/// When the instance was launched: the daemon's word, else the tag.
fn launched_at(row: &Row) -> Option<OffsetDateTime> {
    match &row.daemon {
        Some(Ok(status)) => Some(status.launched_at),
        _ => instances::launch_tags(&row.instance).map(|t| t.launched_at),
    }
}

fn cost_cents(price_cents_per_hour: i64, seconds: i64) -> f64 {
    price_cents_per_hour as f64 * seconds.max(0) as f64 / 3600.0
}

/// Runs `soong status [--watch]`: once, or every few seconds until
/// interrupted (each round is the same one list call plus daemon calls, far
/// within the API's rate limit at a 10 s interval).
pub async fn watch(
    printer: &Printer,
    settings: &Settings,
    args: &crate::args::StatusArgs,
) -> anyhow::Result<ExitStatus> {
    let Some(seconds) = args.watch else {
        return run(printer, settings).await;
    };
    loop {
        if printer.interactive_output() {
            // Clear the screen and go home, like `watch(1)`.
            print!("\x1b[2J\x1b[H");
        }
        printer.info(format!(
            "Every {seconds}s, {} (Ctrl-C to stop)",
            crate::commands::start::clock(OffsetDateTime::now_utc())
        ));
        run(printer, settings).await?;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitStatus::Success),
        }
    }
}

/// Runs `soong status` once.
pub async fn run(printer: &Printer, settings: &Settings) -> anyhow::Result<ExitStatus> {
    if settings.config.status_daemon.token.is_none() {
        printer
            .warn("`status_daemon.token` is not set, so no daemon can be asked for its deadlines");
    }
    let rows = collect(settings).await?;
    let now = OffsetDateTime::now_utc();
    if printer.json() {
        printer.json_value(&json!(
            rows.iter()
                .map(|row| row_json(row, now))
                .collect::<Vec<_>>()
        ));
        return Ok(ExitStatus::Success);
    }
    if rows.is_empty() {
        printer.info("No soong instances. `soong start` launches one.");
        return Ok(ExitStatus::Success);
    }
    let mut table = Vec::new();
    let mut dead = Vec::new();
    for row in &rows {
        let instance = &row.instance;
        let price = instance.instance_type.price_cents_per_hour;
        let launched = launched_at(row);
        // An ending instance's clock stopped at a time the API does not
        // tell; showing a growing uptime and cost would be wrong.
        let uptime = launched
            .filter(|_| !instance.status.is_ending())
            .map(|at| (now - at).whole_seconds());
        let mut cells = vec![
            instance.name.clone().unwrap_or_default(),
            instance.id.clone(),
            instance.status.to_string(),
            instance.instance_type.name.clone(),
            instance.region.name.clone(),
            uptime.map_or_else(|| "-".to_owned(), human_duration),
            uptime.map_or_else(|| "-".to_owned(), |s| dollars(cost_cents(price, s))),
        ];
        match &row.daemon {
            Some(Ok(status)) => {
                let until_shutdown = (status.shutdown_at - now).whole_seconds();
                let total = (status.shutdown_at - status.launched_at).whole_seconds();
                let state = if status.state == DaemonState::Terminating {
                    format!(
                        "terminating ({})",
                        status.terminate_reason.map_or("requested", |r| r.as_str())
                    )
                } else {
                    format!(
                        "{} ({}, in {})",
                        clock(status.shutdown_at),
                        status.shutdown_reason,
                        human_duration(until_shutdown)
                    )
                };
                cells.extend([
                    dollars(cost_cents(price, total)),
                    state,
                    format!(
                        "{} of {}",
                        human_duration(status.idle_seconds as i64),
                        human_duration(status.idle_timeout_seconds as i64)
                    ),
                    human_duration((status.lease_deadline - now).whole_seconds()),
                ]);
            }
            Some(Err(error @ DaemonError::Ssh(_))) => {
                dead.push((
                    instance.name.clone().unwrap_or_else(|| instance.id.clone()),
                    format!("{error}: {}", error_chain(error)),
                ));
                cells.extend([
                    "?".into(),
                    printer.red_bold("SSH FAILED: the daemon was not asked"),
                    "?".into(),
                    "?".into(),
                ]);
            }
            Some(Err(error)) => {
                dead.push((
                    instance.name.clone().unwrap_or_else(|| instance.id.clone()),
                    error.to_string(),
                ));
                let hard = instances::launch_tags(instance).map(|t| t.hard_deadline);
                cells.extend([
                    hard.map_or_else(
                        || "?".to_owned(),
                        |h| {
                            dollars(cost_cents(
                                price,
                                launched.map_or(0, |l| (h - l).whole_seconds()),
                            ))
                        },
                    ),
                    printer.red_bold(&match error {
                        DaemonError::Refused { status: 401, .. } => {
                            "DAEMON REFUSES OUR TOKEN: its deadlines are unknown".to_owned()
                        }
                        DaemonError::Refused { message, .. } => format!("DAEMON ERROR: {message}"),
                        _ => format!(
                            "DAEMON DEAD: only the hard deadline{} stops it",
                            hard.map(|h| format!(" ({})", clock(h))).unwrap_or_default()
                        ),
                    }),
                    "?".into(),
                    "?".into(),
                ]);
            }
            None => cells.extend([String::new(), String::new(), String::new(), String::new()]),
        }
        table.push(cells);
    }
    printer.data(printer.table(
        &[
            "NAME",
            "ID",
            "STATUS",
            "GPU",
            "REGION",
            "UPTIME",
            "COST",
            "AT SHUTDOWN",
            "SHUTDOWN",
            "IDLE",
            "LEASE LEFT",
        ],
        table,
    ));
    for (name, error) in &dead {
        printer.warn(format!(
            "the daemon of `{name}` does not answer ({error}); it is billing without idle or lease enforcement. Stop it with `soong stop --instance {name}` if it is not needed"
        ));
    }
    Ok(ExitStatus::Success)
}

/// The causes of `error`, joined, for one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cause = error.source();
    while let Some(inner) = cause {
        parts.push(inner.to_string());
        cause = inner.source();
    }
    parts.join(": ")
}

fn row_json(row: &Row, now: OffsetDateTime) -> serde_json::Value {
    let instance = &row.instance;
    let price = instance.instance_type.price_cents_per_hour;
    let launched = launched_at(row);
    let uptime = launched
        .filter(|_| !instance.status.is_ending())
        .map(|at| (now - at).whole_seconds());
    let daemon = match &row.daemon {
        None => json!(null),
        Some(Ok(status)) => json!({
            "reachable": true,
            "state": status.state.as_str(),
            "shutdown_at": status.shutdown_at.unix_timestamp(),
            "shutdown_reason": status.shutdown_reason.as_str(),
            "terminate_reason": status.terminate_reason.map(soong_protocol::ShutdownReason::as_str),
            "idle_seconds": status.idle_seconds,
            "idle_timeout_seconds": status.idle_timeout_seconds,
            "lease_deadline": status.lease_deadline.unix_timestamp(),
            "lease_left_seconds": (status.lease_deadline - now).whole_seconds(),
            "hard_deadline": status.hard_deadline.unix_timestamp(),
            "cost_at_shutdown_cents": cost_cents(price, (status.shutdown_at - status.launched_at).whole_seconds()).round(),
        }),
        // Over SSH, the cause (a refused host key, a failed login) is
        // what the user needs to see.
        Some(Err(error @ DaemonError::Ssh(_))) => {
            json!({"reachable": false, "error": format!("{error}: {}", error_chain(error))})
        }
        Some(Err(error)) => json!({"reachable": false, "error": error.to_string()}),
    };
    json!({
        "id": instance.id,
        "name": instance.name,
        "status": instance.status.as_str(),
        "instance_type": instance.instance_type.name,
        "region": instance.region.name,
        "ip": instance.ip,
        "price_cents_per_hour": price,
        "model": instances::launch_tags(instance).and_then(|t| t.model),
        // From the launch tags: what holds even when the daemon is dead.
        "hard_deadline": instances::launch_tags(instance).map(|t| t.hard_deadline.unix_timestamp()),
        "launched_at": launched.map(OffsetDateTime::unix_timestamp),
        "uptime_seconds": uptime,
        "cost_so_far_cents": uptime.map(|s| cost_cents(price, s).round()),
        "daemon": daemon,
    })
}

//! `soong stop`: terminate a soong instance through the Lambda API (powering
//! off does not stop billing on Lambda), and wait until the API confirms.

use std::time::Duration;

use anyhow::Context as _;
use lambda_cloud::{ErrorKind, InstanceStatus};
use serde_json::json;

use crate::args::StopArgs;
use crate::daemon_client::DaemonClient;
use crate::exit::{ExitStatus, UserError};
use crate::instances;
use crate::output::Printer;
use crate::settings::Settings;

/// How long Lambda may take to confirm a termination.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The lease deadline the daemon reports now (over SSH or directly, per
/// `status_daemon.access`); without an answer, the history keeps what it
/// logged at launch and each extension.
async fn last_lease_deadline(
    printer: &Printer,
    settings: &Settings,
    instance: &lambda_cloud::Instance,
) -> Option<i64> {
    let token = settings.config.status_daemon.token.as_ref()?;
    let read = async {
        let daemon =
            DaemonClient::for_instance(settings, token, instance, Duration::from_secs(3)).await?;
        daemon.status().await
    };
    match tokio::time::timeout(Duration::from_secs(15), read).await {
        Ok(Ok(status)) => Some(status.lease_deadline.unix_timestamp()),
        Ok(Err(error)) => {
            printer.verbose(format!("no last status from the daemon: {error}"));
            None
        }
        Err(_) => None,
    }
}

/// Runs `soong stop`.
pub async fn run(
    printer: &Printer,
    settings: &Settings,
    args: &StopArgs,
) -> anyhow::Result<ExitStatus> {
    let client = settings.client()?;
    let instance = instances::choose(settings, &client, "stop").await?;
    let name = instance.name.clone().unwrap_or_else(|| instance.id.clone());
    if !crate::prompt::confirm(
        settings,
        &format!("Terminate {}?", instances::describe(&instance)),
        "terminate an instance",
    )? {
        return Err(UserError::new("not stopped").into());
    }
    // The daemon's last word, for the history: the lease as extended (what
    // the cost controls would have allowed). Best effort and quick: a dead
    // daemon must not delay a termination.
    let lease_deadline = last_lease_deadline(printer, settings, &instance).await;
    client
        .terminate_instances(std::slice::from_ref(&instance.id))
        .await
        .with_context(|| format!("cannot terminate `{name}`"))?;
    crate::history::record(
        printer,
        settings,
        &crate::history::Entry {
            instance_name: Some(name.clone()),
            lease_deadline,
            reason: Some("user".to_owned()),
            source: Some("local".to_owned()),
            ..crate::history::Entry::new(
                time::OffsetDateTime::now_utc().unix_timestamp(),
                crate::history::Kind::Terminate,
                &instance.id,
            )
        },
    );
    printer.info(format!("Termination of `{name}` requested."));
    // Its tunnel, if any, has nothing left to forward to.
    if let Some(record) = crate::tunnel::load(settings, &instance.id) {
        if crate::tunnel::terminate(&record) {
            printer.info(format!(
                "Stopped the tunnel to `{name}` (ssh PID {}).",
                record.pid
            ));
        }
        crate::tunnel::remove(settings, &instance.id);
    }
    let mut status = InstanceStatus::Terminating;
    if !args.no_wait {
        let spinner = printer.spinner(format!(
            "Waiting for Lambda to confirm `{name}` is terminated"
        ));
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT.mul_f64(settings.wait_scale);
        let poll = Duration::from_secs(3)
            .mul_f64(settings.wait_scale)
            .max(Duration::from_millis(100));
        loop {
            match client.get_instance(&instance.id).await {
                Ok(current) if current.status == InstanceStatus::Terminated => {
                    status = InstanceStatus::Terminated;
                    break;
                }
                Err(error) if error.kind() == ErrorKind::NotFound => {
                    status = InstanceStatus::Terminated;
                    break;
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(poll).await;
        }
        if let Some(spinner) = spinner {
            spinner.finish_and_clear();
        }
        if status != InstanceStatus::Terminated {
            return Err(UserError::new(format!("Lambda has not confirmed that `{name}` is terminated"))
                .hint("check with `soong status` in a minute; Lambda stops billing once it is `terminated`")
                .into());
        }
    }
    if status == InstanceStatus::Terminated {
        // Its host key will never be presented again; Lambda may give its
        // address to another instance.
        let _ = crate::ssh::unpin(&crate::ssh::known_hosts_path(settings), &name);
    }
    if printer.json() {
        printer.json_value(&json!({"id": instance.id, "name": name, "status": status.as_str()}));
    } else if status == InstanceStatus::Terminated {
        printer.info(format!("`{name}` is terminated; billing has stopped."));
    }
    Ok(ExitStatus::Success)
}

//! `soong extend <hours>`: ask the instance's daemon for more lease, and
//! report truthfully what it granted (the lease is capped at `max_lease`
//! from launch; the hard deadline never moves).

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use crate::args::ExtendArgs;
use crate::commands::start::clock;
use crate::daemon_client::{DaemonClient, DaemonError};
use crate::exit::{ExitStatus, UserError};
use crate::instances;
use crate::output::{Printer, dollars, human_duration};
use crate::settings::Settings;

/// Runs `soong extend`.
pub async fn run(
    printer: &Printer,
    settings: &Settings,
    args: &ExtendArgs,
) -> anyhow::Result<ExitStatus> {
    if !(args.hours.is_finite() && args.hours > 0.0 && args.hours <= 8.0) {
        return Err(
            UserError::new(format!("cannot extend by {} hours", args.hours))
                .hint("give a number of hours between 0 and 8, e.g. `soong extend 1.5`")
                .status(ExitStatus::Usage)
                .into(),
        );
    }
    let token = settings.require_token()?;
    let client = settings.client()?;
    let instance = instances::choose(settings, &client, "extend").await?;
    let name = instance.name.clone().unwrap_or_else(|| instance.id.clone());
    let daemon = DaemonClient::for_instance(settings, token, &instance, Duration::from_secs(10))
        .await
        .with_context(|| format!("cannot extend `{name}`"))?;
    let granted = match daemon.extend(args.hours).await {
        Ok(granted) => granted,
        Err(DaemonError::Refused {
            status: 409,
            code,
            message,
        }) => {
            return Err(UserError::new(format!("the lease of `{name}` cannot be extended: {message}"))
                .hint(if code == soong_protocol::api::error_code::TERMINATING {
                    "the instance is being terminated; `soong start` launches a new one".to_owned()
                } else {
                    "the lease is at its maximum (8 h from launch by default); the hard deadline never moves".to_owned()
                })
                .into());
        }
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!("cannot extend `{name}`")));
        }
    };
    crate::history::record(
        printer,
        settings,
        &crate::history::Entry {
            instance_name: Some(name.clone()),
            lease_deadline: Some(granted.lease_deadline.unix_timestamp()),
            granted_seconds: Some(granted.granted_seconds as i64),
            source: Some("local".to_owned()),
            ..crate::history::Entry::new(
                time::OffsetDateTime::now_utc().unix_timestamp(),
                crate::history::Kind::Extend,
                &instance.id,
            )
        },
    );
    let price = instance.instance_type.price_cents_per_hour as f64;
    let cost = price * granted.granted_seconds as f64 / 3600.0;
    if printer.json() {
        printer.json_value(&json!({
            "id": instance.id,
            "name": name,
            "lease_deadline": granted.lease_deadline.unix_timestamp(),
            "granted_seconds": granted.granted_seconds,
            "requested_seconds": granted.requested_seconds,
            "capped": granted.capped,
            "extension_cost_cents": cost.round(),
        }));
        return Ok(ExitStatus::Success);
    }
    printer.info(format!(
        "Extended `{name}` by {} (at most {} more if it runs to the new lease end); the lease now ends at {}.",
        human_duration(granted.granted_seconds as i64),
        dollars(cost),
        clock(granted.lease_deadline)
    ));
    if granted.capped {
        printer.warn(format!(
            "asked for {}, granted {}: the lease is now at its maximum",
            human_duration(granted.requested_seconds as i64),
            human_duration(granted.granted_seconds as i64)
        ));
    }
    Ok(ExitStatus::Success)
}

//! `GET /metrics`: the status as Prometheus text, for a scraper or a
//! dashboard that wants graphs rather than JSON.

use std::fmt::Write;

use soong_protocol::api::{DaemonState, StatusResponse};
use time::OffsetDateTime;

/// Renders the metrics. Seconds to a deadline are negative once it passed.
pub fn render(status: &StatusResponse, terminate_attempts: u32, now: OffsetDateTime) -> String {
    let to = |deadline: OffsetDateTime| (deadline - now).whole_seconds();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, i64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    gauge(
        "soong_seconds_to_deadline",
        "Seconds until each deadline (negative once passed).",
        &[
            (r#"{deadline="idle"}"#, status.idle_deadline.map_or(0, to)),
            (r#"{deadline="lease"}"#, to(status.lease_deadline)),
            (r#"{deadline="max_lease"}"#, to(status.max_lease_deadline)),
            (r#"{deadline="hard"}"#, to(status.hard_deadline)),
            (r#"{deadline="shutdown"}"#, to(status.shutdown_at)),
        ],
    );
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        "soong_idle_seconds",
        "Seconds since the last activity.",
        &[("", int(status.idle_seconds))],
    );
    gauge(
        "soong_active_connections",
        "TCP connections to the activity ports at the last sample.",
        &[("", int(status.active_connections as u64))],
    );
    gauge(
        "soong_terminating",
        "1 once termination has begun.",
        &[("", i64::from(status.state == DaemonState::Terminating))],
    );
    gauge(
        "soong_extensions",
        "Lease extensions granted.",
        &[("", int(status.extensions.len() as u64))],
    );
    let _ = writeln!(
        out,
        "# HELP soong_terminate_attempts_total Terminate calls made by this process.\n# TYPE soong_terminate_attempts_total counter\nsoong_terminate_attempts_total {terminate_attempts}"
    );
    out
}

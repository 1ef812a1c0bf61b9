//! `soong history [--days N]`: every launch, extension and termination from
//! the local log and, with `worker.url` and `worker.admin_token`, the
//! watchdog worker's events (its terminations, which happen while this
//! machine may be off); duration and cost per instance, totals per day as
//! a bar chart, and what the cost controls saved.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use crate::args::HistoryArgs;
use crate::exit::ExitStatus;
use crate::history::{self, Entry, Kind};
use crate::output::{Printer, dollars, human_duration};
use crate::settings::Settings;

/// Pages of worker events to read at most (1,000 events each).
const MAX_PAGES: usize = 10;

/// Runs `soong history`.
pub async fn run(
    printer: &Printer,
    settings: &Settings,
    args: &HistoryArgs,
) -> anyhow::Result<ExitStatus> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let since = now - i64::from(args.days) * 86_400;
    let (mut entries, skipped) = history::load(settings)?;
    if skipped > 0 {
        printer.warn(format!(
            "{skipped} line(s) of `{}` could not be read and were skipped",
            history::path(settings).display()
        ));
    }
    let mut worker_note = None;
    if let Some(worker) = &settings.config.worker
        && let (Some(url), Some(admin)) = (worker.url(), worker.admin_token.as_ref())
    {
        let read = async {
            let mut found = worker_events(url, admin.expose(), since).await?;
            found.extend(worker_heartbeats(url, admin.expose()).await?);
            anyhow::Ok(found)
        };
        match read.await {
            Ok(events) => entries.extend(events),
            Err(error) => {
                printer.warn(format!(
                    "cannot read the worker's events ({error:#}); showing the local log only"
                ));
                worker_note = Some(format!("{error:#}"));
            }
        }
    }
    let all = history::summarize(&entries, now);
    // An instance belongs to the window when any of its life is in it.
    let shown: Vec<&history::Summary> = all
        .iter()
        .filter(|s| {
            let end = s
                .launched_at
                .map_or(s.ended_at.unwrap_or(now), |l| l + s.duration_seconds);
            end >= since
        })
        .collect();
    let owned: Vec<history::Summary> = shown.iter().map(|s| (*s).clone()).collect();
    let days = history::per_day(&owned, now, args.days);
    let total: f64 = days.iter().map(|d| d.1).sum();
    let saved: f64 = owned.iter().map(|s| s.saved_cents).sum();
    let saved_seconds: i64 = owned.iter().map(|s| s.saved_seconds).sum();
    if printer.json() {
        let events: Vec<&Entry> = entries.iter().filter(|e| e.at >= since).collect();
        printer.json_value(&json!({
            "days": args.days,
            "instances": owned,
            "per_day": days.iter().map(|(day, cents)| json!({"date": day, "cost_cents": cents.round()})).collect::<Vec<_>>(),
            "total_cost_cents": total.round(),
            "saved_cents": saved.round(),
            "saved_seconds": saved_seconds,
            "events": events,
            "worker_error": worker_note,
        }));
        return Ok(ExitStatus::Success);
    }
    if owned.is_empty() {
        printer.info(format!(
            "No launches in the last {} day(s). `soong start` launches one.",
            args.days
        ));
        return Ok(ExitStatus::Success);
    }
    let rows = owned
        .iter()
        .map(|s| {
            vec![
                s.instance_name
                    .clone()
                    .unwrap_or_else(|| s.instance_id.clone()),
                s.launched_at.map_or_else(|| "?".to_owned(), when),
                match s.ended_at {
                    Some(at) if s.end_estimated => format!("≤ {}", when(at)),
                    Some(at) => when(at),
                    None => "running".to_owned(),
                },
                s.end_reason.clone().unwrap_or_default(),
                s.extensions.to_string(),
                human_duration(s.duration_seconds),
                dollars(s.cost_cents),
                if s.saved_seconds > 0 {
                    format!(
                        "{} ({})",
                        dollars(s.saved_cents),
                        human_duration(s.saved_seconds)
                    )
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    printer.data(printer.table(
        &[
            "INSTANCE", "LAUNCHED", "ENDED", "REASON", "EXT", "RAN", "COST", "SAVED",
        ],
        rows,
    ));
    let max = days.iter().map(|d| d.1).fold(0.0, f64::max);
    let mut chart = String::from("\nCost per day (UTC):\n");
    for (day, cents) in &days {
        let _ = writeln!(
            chart,
            "  {day}  {:>9}  {}",
            dollars(*cents),
            history::bar(*cents, max, 40)
        );
    }
    let _ = write!(
        chart,
        "\nTotal: {} over {} instance(s) in {} day(s). The cost controls saved {} ({} that leases still allowed).",
        dollars(total),
        owned.len(),
        args.days,
        dollars(saved),
        human_duration(saved_seconds)
    );
    printer.data(chart);
    Ok(ExitStatus::Success)
}

/// `MM-DD HH:MM` UTC.
fn when(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp(at).map_or_else(
        |_| "?".to_owned(),
        |t| {
            format!(
                "{:02}-{:02} {:02}:{:02}",
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        },
    )
}

/// The worker's termination events since `since`, as log entries.
async fn worker_events(url: &str, admin_token: &str, since: i64) -> anyhow::Result<Vec<Entry>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut request = http
            .get(format!("{}/events", url.trim_end_matches('/')))
            .bearer_auth(admin_token)
            .query(&[("since", since.to_string()), ("limit", "1000".to_owned())]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let response = request.send().await?.error_for_status()?;
        let page: serde_json::Value = response.json().await?;
        for event in page["events"].as_array().into_iter().flatten() {
            if let Some(entry) = worker_entry(event) {
                entries.push(entry);
            }
        }
        match page["cursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(entries)
}

/// The daemons' own terminations (idle timeout, lease, hard timeout) as the
/// worker last heard of them: a heartbeat in state `terminating` (the
/// daemon sends one just before its terminate call). Heartbeats live 48 h
/// in the worker.
async fn worker_heartbeats(url: &str, admin_token: &str) -> anyhow::Result<Vec<Entry>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let page: serde_json::Value = http
        .get(format!("{}/instances", url.trim_end_matches('/')))
        .bearer_auth(admin_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(page["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|hb| hb["state"] == "terminating")
        .filter_map(|hb| {
            let at = OffsetDateTime::parse(
                hb["sent_at"].as_str()?,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?
            .unix_timestamp();
            Some(Entry {
                instance_name: hb["instance_name"].as_str().map(str::to_owned),
                reason: hb["shutdown_reason"].as_str().map(str::to_owned),
                source: Some("worker".to_owned()),
                ..Entry::new(at, Kind::Terminate, hb["instance_id"].as_str()?)
            })
        })
        .collect())
}

/// A worker event as a log entry: its terminations (`watchdog_terminate`).
fn worker_entry(event: &serde_json::Value) -> Option<Entry> {
    if event["type"].as_str()? != "watchdog_terminate" {
        return None;
    }
    let at = OffsetDateTime::parse(
        event["ts"].as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?
    .unix_timestamp();
    let id = event["instance_id"].as_str()?;
    Some(Entry {
        instance_name: event["instance_name"].as_str().map(str::to_owned),
        reason: Some(format!(
            "watchdog:{}",
            event["reason"].as_str().unwrap_or("unknown")
        )),
        source: Some("worker".to_owned()),
        ..Entry::new(at, Kind::Terminate, id)
    })
}

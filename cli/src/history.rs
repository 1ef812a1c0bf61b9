//! The record of what was spent: an append-only local log of launches,
//! extensions and terminations (`<state dir>/history.jsonl`, one JSON
//! object a line, 0600), written by `start`, `extend` and `stop`, and the
//! arithmetic `soong history` shows from it (an I/O-free core: [`summarize`]
//! and [`per_day`] take the entries and `now`).
//!
//! Lines are only ever appended, each with one `write` on a file opened
//! with `O_APPEND`, so two soong processes cannot interleave a line; a line
//! that cannot be read (a torn write after a crash, a newer soong's event)
//! is skipped and counted, never fatal.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// The log's file name in the state directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `soong start` launched an instance.
    Launch,
    /// `soong extend` lengthened its lease.
    Extend,
    /// The instance was terminated (by the user, its daemon or the watchdog).
    Terminate,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When (unix seconds).
    pub at: i64,
    /// What.
    pub event: Kind,
    /// The instance's id.
    pub instance_id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    /// Its type (launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Its region (launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The model it served (launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Its price (launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_cents_per_hour: Option<i64>,
    /// The lease's end as of this event (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_deadline: Option<i64>,
    /// The hard deadline (launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_deadline: Option<i64>,
    /// Seconds an extension granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_seconds: Option<i64>,
    /// Why it was terminated: `user`, `idle_timeout`, `lease_expired`,
    /// `hard_timeout`, `watchdog:<rule>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the event comes from: `local` (this log) or `worker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Entry {
    /// An event with only the required fields.
    pub fn new(at: i64, event: Kind, instance_id: &str) -> Self {
        Self {
            at,
            event,
            instance_id: instance_id.to_owned(),
            instance_name: None,
            instance_type: None,
            region: None,
            model: None,
            price_cents_per_hour: None,
            lease_deadline: None,
            hard_deadline: None,
            granted_seconds: None,
            reason: None,
            source: None,
        }
    }
}

/// The log's path.
pub fn path(settings: &Settings) -> PathBuf {
    crate::settings::state_dir(settings).join(HISTORY_FILE)
}

/// Appends `entry` to the log.
pub fn append(settings: &Settings, entry: &Entry) -> std::io::Result<()> {
    let path = path(settings);
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut line = serde_json::to_string(entry)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(line.as_bytes())
}

/// Appends, and says so on failure without failing the command: the
/// instance's fate matters more than its record.
pub fn record(printer: &crate::output::Printer, settings: &Settings, entry: &Entry) {
    if let Err(error) = append(settings, entry) {
        printer.warn(format!(
            "cannot append to the history log `{}`: {error}",
            path(settings).display()
        ));
    }
}

/// The log's entries, and how many lines could not be read.
pub fn load(settings: &Settings) -> std::io::Result<(Vec<Entry>, usize)> {
    let text = match std::fs::read_to_string(path(settings)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error),
    };
    let mut skipped = 0;
    let entries = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let entry = serde_json::from_str::<Entry>(line).ok();
            if entry.is_none() {
                skipped += 1;
            }
            entry
        })
        .collect();
    Ok((entries, skipped))
}

/// One instance's life, from its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The instance's id.
    pub instance_id: String,
    /// Its name.
    pub instance_name: Option<String>,
    /// Its type.
    pub instance_type: Option<String>,
    /// Its model.
    pub model: Option<String>,
    /// Its price.
    pub price_cents_per_hour: Option<i64>,
    /// When it was launched (none: only its end is on record).
    pub launched_at: Option<i64>,
    /// When it ended (none: still running, or its end was not seen).
    pub ended_at: Option<i64>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// True when no termination was seen and its lease has passed: it is
    /// counted as ended at the lease's end, the latest its daemon allows
    /// (an extension made outside soong is not in the log).
    pub end_estimated: bool,
    /// Extensions granted.
    pub extensions: u32,
    /// The lease's end as last known.
    pub lease_deadline: Option<i64>,
    /// Seconds it ran (to `now` while running).
    pub duration_seconds: i64,
    /// What it cost (to `now` while running).
    pub cost_cents: f64,
    /// Seconds between its end and the end its lease allowed.
    pub saved_seconds: i64,
    /// What those seconds would have cost.
    pub saved_cents: f64,
}

fn cents(price: Option<i64>, seconds: i64) -> f64 {
    price.unwrap_or(0) as f64 * seconds.max(0) as f64 / 3600.0
}

/// The instances of `entries`, oldest launch first. The first termination
/// of an instance counts (the worker may record one the CLI also did).
pub fn summarize(entries: &[Entry], now: i64) -> Vec<Summary> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.at);
    let mut by_id: BTreeMap<String, Summary> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for entry in sorted {
        let summary = by_id.entry(entry.instance_id.clone()).or_insert_with(|| {
            order.push(entry.instance_id.clone());
            Summary {
                instance_id: entry.instance_id.clone(),
                instance_name: None,
                instance_type: None,
                model: None,
                price_cents_per_hour: None,
                launched_at: None,
                ended_at: None,
                end_reason: None,
                end_estimated: false,
                extensions: 0,
                lease_deadline: None,
                duration_seconds: 0,
                cost_cents: 0.0,
                saved_seconds: 0,
                saved_cents: 0.0,
            }
        });
        if summary.instance_name.is_none() {
            summary.instance_name.clone_from(&entry.instance_name);
        }
        match entry.event {
            Kind::Launch => {
                summary.launched_at.get_or_insert(entry.at);
                summary.instance_type.clone_from(&entry.instance_type);
                summary.model.clone_from(&entry.model);
                summary.price_cents_per_hour = entry.price_cents_per_hour;
                summary.lease_deadline = entry.lease_deadline.or(summary.lease_deadline);
            }
            Kind::Extend => {
                summary.extensions += 1;
                summary.lease_deadline = entry.lease_deadline.or(summary.lease_deadline);
            }
            Kind::Terminate => {
                if summary.ended_at.is_none() {
                    summary.ended_at = Some(entry.at);
                    summary.end_reason.clone_from(&entry.reason);
                    // The daemon's last word on the lease beats our log.
                    summary.lease_deadline = entry.lease_deadline.or(summary.lease_deadline);
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .map(|mut summary| {
            if summary.ended_at.is_none()
                && let Some(lease) = summary.lease_deadline
                && lease < now
            {
                summary.ended_at = Some(lease);
                summary.end_estimated = true;
                summary.end_reason = Some("not seen (by its lease's end)".to_owned());
            }
            if let Some(launched) = summary.launched_at {
                let end = summary.ended_at.unwrap_or(now).max(launched);
                summary.duration_seconds = end - launched;
                summary.cost_cents = cents(summary.price_cents_per_hour, summary.duration_seconds);
            }
            if let (Some(ended), Some(lease), false) = (
                summary.ended_at,
                summary.lease_deadline,
                summary.end_estimated,
            ) {
                summary.saved_seconds = (lease - ended).max(0);
                summary.saved_cents = cents(summary.price_cents_per_hour, summary.saved_seconds);
            }
            summary
        })
        .collect()
}

/// The UTC day (`YYYY-MM-DD`) of a unix time.
pub fn day_of(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at).map_or_else(
        |_| "?".to_owned(),
        |t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
    )
}

/// Cost per UTC day over the last `days` days (oldest first, every day
/// present), each instance's running time split at midnight.
pub fn per_day(summaries: &[Summary], now: i64, days: u32) -> Vec<(String, f64)> {
    const DAY: i64 = 86_400;
    let today = now.div_euclid(DAY) * DAY;
    let first = today - i64::from(days.saturating_sub(1)) * DAY;
    let mut totals: Vec<(String, f64)> = (0..i64::from(days))
        .map(|i| (day_of(first + i * DAY), 0.0))
        .collect();
    for summary in summaries {
        let Some(start) = summary.launched_at else {
            continue;
        };
        let end = start + summary.duration_seconds;
        for (i, total) in totals.iter_mut().enumerate() {
            let day_start = first + i as i64 * DAY;
            let overlap = end.min(day_start + DAY) - start.max(day_start);
            if overlap > 0 {
                total.1 += cents(summary.price_cents_per_hour, overlap);
            }
        }
    }
    totals
}

/// A horizontal bar of `value` out of `max` in `width` cells, in eighths.
pub fn bar(value: f64, max: f64, width: usize) -> String {
    const PARTS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    if max <= 0.0 || value <= 0.0 {
        return String::new();
    }
    let eighths = ((value / max) * (width * 8) as f64).round().max(1.0) as usize;
    let mut text = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        text.push(PARTS[eighths % 8 - 1]);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(at: i64, id: &str, lease: i64) -> Entry {
        Entry {
            instance_name: Some(format!("soong-{id}")),
            price_cents_per_hour: Some(100),
            lease_deadline: Some(at + lease),
            ..Entry::new(at, Kind::Launch, id)
        }
    }

    #[test]
    fn duration_cost_and_savings_follow_the_lease_as_extended() {
        let t = 1_700_000_000 - 1_700_000_000 % 86_400; // a midnight
        let mut extend = Entry::new(t + 3600, Kind::Extend, "a");
        extend.lease_deadline = Some(t + 6 * 3600);
        let mut stop = Entry::new(t + 2 * 3600, Kind::Terminate, "a");
        stop.reason = Some("user".into());
        // The worker reports a later termination of the same instance.
        let mut late = Entry::new(t + 3 * 3600, Kind::Terminate, "a");
        late.reason = Some("watchdog:stale_heartbeat".into());
        let entries = vec![late, launch(t, "a", 4 * 3600), stop, extend];
        let all = summarize(&entries, t + 10 * 3600);
        assert_eq!(all.len(), 1);
        let a = &all[0];
        assert_eq!(a.extensions, 1);
        assert_eq!(a.end_reason.as_deref(), Some("user"));
        assert_eq!(a.duration_seconds, 2 * 3600);
        assert!((a.cost_cents - 200.0).abs() < 1e-9);
        assert_eq!(a.saved_seconds, 4 * 3600);
        assert!((a.saved_cents - 400.0).abs() < 1e-9);
    }

    #[test]
    fn a_day_is_split_at_midnight_and_running_instances_cost_until_now() {
        let midnight = 1_700_000_000 - 1_700_000_000 % 86_400;
        // Runs from 23:00 to 01:00, and one still running since 02:00.
        let mut stop = Entry::new(midnight + 3600, Kind::Terminate, "a");
        stop.reason = Some("idle_timeout".into());
        let entries = vec![
            launch(midnight - 3600, "a", 4 * 3600),
            stop,
            launch(midnight + 2 * 3600, "b", 4 * 3600),
        ];
        let now = midnight + 3 * 3600;
        let all = summarize(&entries, now);
        assert_eq!(all[1].ended_at, None);
        assert_eq!(all[1].duration_seconds, 3600);
        let days = per_day(&all, now, 2);
        assert_eq!(days.len(), 2);
        assert!((days[0].1 - 100.0).abs() < 1e-9, "{days:?}");
        assert!((days[1].1 - 200.0).abs() < 1e-9, "{days:?}");
        assert_eq!(days[1].0, day_of(now));
    }

    #[test]
    fn bars_scale_in_eighths() {
        assert_eq!(bar(1.0, 1.0, 4), "████");
        assert_eq!(bar(0.5, 1.0, 4), "██");
        assert_eq!(bar(1.0, 8.0, 1), "▏");
        assert_eq!(bar(0.0, 1.0, 4), "");
    }
}

//! The seam to the service manager: readiness, watchdog pings and a status
//! line (DESIGN.md §3.2, `Type=notify`), over `sd_notify(3)`'s datagram
//! socket.
//!
//! The daemon talks to systemd only through [`Notifier`], so the
//! enforcement loop can ping the watchdog without knowing whether systemd
//! is there. [`from_env`] picks [`SdNotifier`] when `NOTIFY_SOCKET` is set
//! and [`NoopNotifier`] otherwise (nothing is sent, nothing is opened).
//!
//! The loop calls [`Notifier::watchdog`] on every turn (at least once a
//! second); [`SdNotifier`] sends `WATCHDOG=1` only when half of
//! `WATCHDOG_USEC` has passed since the last ping, as `sd_watchdog_enabled(3)`
//! recommends. Because the pings come from the loop, a loop that hangs
//! (not only a process that dies) stops them and systemd restarts the
//! daemon.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use soong_protocol::api::{DaemonState, StatusResponse};
use soong_protocol::lease::ShutdownReason;
use time::OffsetDateTime;

/// What the daemon tells its service manager.
pub trait Notifier: Send + Sync {
    /// The listener is bound and the state loaded (`READY=1`).
    fn ready(&self) {}
    /// The enforcement loop completed a turn (`WATCHDOG=1`). Called from
    /// the loop itself, so a hung loop stops the pings and gets restarted.
    fn watchdog(&self) {}
    /// A one-line summary (`STATUS=`).
    fn status(&self, _line: &str) {}
    /// The daemon is shutting down (`STOPPING=1`).
    fn stopping(&self) {}
}

/// A notifier that tells no one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopNotifier;

impl Notifier for NoopNotifier {}

/// `sd_notify` to the socket in `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct SdNotifier {
    /// Half of `WATCHDOG_USEC`, when systemd asked for pings.
    ping_every: Option<Duration>,
    last_ping: Mutex<Option<Instant>>,
    last_status: Mutex<String>,
}

impl SdNotifier {
    /// A notifier that pings every `ping_every` (`None`: no watchdog).
    pub fn new(ping_every: Option<Duration>) -> Self {
        Self {
            ping_every,
            last_ping: Mutex::new(None),
            last_status: Mutex::new(String::new()),
        }
    }
}

fn send(state: &[NotifyState<'_>]) {
    // `false`: keep NOTIFY_SOCKET, the later pings need it (children such
    // as `pre_terminate` are started without it instead).
    if let Err(err) = sd_notify::notify(false, state) {
        log::warn!("cannot notify systemd: {err}");
    }
}

impl Notifier for SdNotifier {
    fn ready(&self) {
        send(&[NotifyState::Ready]);
    }

    fn watchdog(&self) {
        let Some(every) = self.ping_every else {
            return;
        };
        let now = Instant::now();
        {
            let mut last = self
                .last_ping
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !ping_due(*last, now, every) {
                return;
            }
            *last = Some(now);
        }
        send(&[NotifyState::Watchdog]);
    }

    fn status(&self, line: &str) {
        {
            let mut last = self
                .last_status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *last == line {
                return;
            }
            line.clone_into(&mut last);
        }
        send(&[NotifyState::Status(line)]);
    }

    fn stopping(&self) {
        send(&[NotifyState::Stopping]);
    }
}

/// Whether a watchdog ping is due: the first one at once, then one every
/// `every` (the loop calls at least once a second, so pings go out at most
/// a second late).
fn ping_due(last: Option<Instant>, now: Instant, every: Duration) -> bool {
    last.is_none_or(|last| now.duration_since(last) >= every)
}

/// The notifier for this environment: [`SdNotifier`] under systemd
/// (`NOTIFY_SOCKET` set), else [`NoopNotifier`].
pub fn from_env() -> Box<dyn Notifier> {
    if std::env::var_os("NOTIFY_SOCKET").is_none_or(|s| s.is_empty()) {
        return Box::new(NoopNotifier);
    }
    let ping_every = watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );
    if let Some(every) = ping_every {
        log::debug!("systemd watchdog on: pinging every {}ms", every.as_millis());
    }
    Box::new(SdNotifier::new(ping_every))
}

/// How often to ping: half of `WATCHDOG_USEC`, if it is set, positive, and
/// meant for this process (`WATCHDOG_PID` unset or equal to `pid`, as
/// `sd_watchdog_enabled(3)` reads them).
pub fn watchdog_interval(
    usec: Option<&str>,
    watchdog_pid: Option<&str>,
    pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(owner) = watchdog_pid
        && owner.trim().parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec) / 2)
}

/// The `STATUS=` line, e.g. `idle 3m/30m, lease 2h13m left, shutdown 14:05
/// (lease)`, or, while terminating, `terminating (lease), 2 attempts, last
/// error: ...`.
pub fn status_line(status: &StatusResponse, now: OffsetDateTime) -> String {
    if status.state == DaemonState::Terminating {
        let reason = status.terminate_reason.unwrap_or(status.shutdown_reason);
        let progress = if status.terminate_confirmed {
            "confirmed by Lambda".to_owned()
        } else {
            let attempts = status.terminate_attempts;
            let plural = if attempts == 1 { "" } else { "s" };
            match &status.terminate_error {
                Some(error) => format!("{attempts} attempt{plural}, last error: {error}"),
                None => format!("{attempts} attempt{plural}"),
            }
        };
        let line = format!("terminating ({}), {progress}", short_reason(reason));
        // One line, of bounded length, whatever the error said.
        return line.replace(['\n', '\r'], " ").chars().take(200).collect();
    }
    let lease_left = positive_seconds(status.lease_deadline - now);
    format!(
        "idle {}/{}, lease {} left, shutdown {:02}:{:02} UTC ({})",
        short_duration(status.idle_seconds),
        short_duration(status.idle_timeout_seconds),
        short_duration(lease_left),
        status.shutdown_at.hour(),
        status.shutdown_at.minute(),
        short_reason(status.shutdown_reason),
    )
}

fn positive_seconds(d: time::Duration) -> u64 {
    u64::try_from(d.whole_seconds()).unwrap_or(0)
}

/// `45s`, `3m`, `2h13m`, `2h`: the precision a glance needs.
pub fn short_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        _ if secs % 3600 < 60 => format!("{}h", secs / 3600),
        _ => format!("{}h{}m", secs / 3600, (secs / 60) % 60),
    }
}

fn short_reason(reason: ShutdownReason) -> &'static str {
    match reason {
        ShutdownReason::IdleTimeout => "idle",
        ShutdownReason::LeaseExpired => "lease",
        ShutdownReason::HardTimeout => "hard timeout",
        ShutdownReason::ShutdownRequested => "requested",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_watchdog_interval_is_half_of_watchdog_usec() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn no_watchdog_when_unset_zero_garbage_or_meant_for_another_process() {
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
    }

    #[test]
    fn pings_go_out_at_once_then_once_per_interval_not_on_every_turn() {
        let start = Instant::now();
        let every = Duration::from_secs(15);
        assert!(ping_due(None, start, every));
        assert!(!ping_due(
            Some(start),
            start + Duration::from_secs(1),
            every
        ));
        assert!(!ping_due(
            Some(start),
            start + Duration::from_millis(14_999),
            every
        ));
        assert!(ping_due(Some(start), start + every, every));
    }

    #[test]
    fn short_durations_round_down_to_what_a_glance_needs() {
        assert_eq!(short_duration(0), "0s");
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(180), "3m");
        assert_eq!(short_duration(1800), "30m");
        assert_eq!(short_duration(7200), "2h");
        assert_eq!(short_duration(2 * 3600 + 13 * 60 + 59), "2h13m");
    }

    fn status(now: OffsetDateTime) -> StatusResponse {
        let hour = time::Duration::hours(1);
        StatusResponse {
            instance_id: Some("i-1".into()),
            instance_name: Some("soong-a".into()),
            state: DaemonState::Running,
            terminate_reason: None,
            terminate_detail: None,
            terminating_since: None,
            terminate_attempts: 0,
            terminate_confirmed: false,
            terminate_error: None,
            launched_at: now - hour,
            uptime_seconds: 3600,
            shutdown_at: datetime!(2026-12-01 14:05 UTC),
            shutdown_reason: ShutdownReason::LeaseExpired,
            idle_deadline: None,
            lease_deadline: now + time::Duration::minutes(133),
            max_lease_deadline: now + 7 * hour,
            hard_deadline: now + 7 * hour,
            idle_timeout_seconds: 1800,
            idle_seconds: 190,
            last_activity: now,
            last_activity_source: None,
            active_connections: 0,
            extensions: Vec::new(),
            price_cents_per_hour: None,
        }
    }

    #[test]
    fn the_status_line_summarises_idle_lease_and_shutdown() {
        let now = datetime!(2026-12-01 11:52 UTC);
        assert_eq!(
            status_line(&status(now), now),
            "idle 3m/30m, lease 2h13m left, shutdown 14:05 UTC (lease)"
        );
    }

    #[test]
    fn the_status_line_while_terminating_is_one_line_with_the_last_error() {
        let now = datetime!(2026-12-01 11:52 UTC);
        let mut s = status(now);
        s.state = DaemonState::Terminating;
        s.terminate_reason = Some(ShutdownReason::IdleTimeout);
        s.terminate_attempts = 2;
        s.terminate_error = Some("HTTP 503\nservice unavailable".into());
        assert_eq!(
            status_line(&s, now),
            "terminating (idle), 2 attempts, last error: HTTP 503 service unavailable"
        );
        s.terminate_confirmed = true;
        assert_eq!(
            status_line(&s, now),
            "terminating (idle), confirmed by Lambda"
        );
    }
}

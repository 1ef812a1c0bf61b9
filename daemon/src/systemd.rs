//! The seam to the service manager: readiness, watchdog pings and a status
//! line (DESIGN.md §3.2, `Type=notify`).
//!
//! The daemon talks to systemd only through [`Notifier`], so the
//! enforcement loop can ping the watchdog without knowing whether systemd
//! is there. Today every notifier is the no-op one; the `sd_notify`
//! implementation (and journald logging) plugs in here without touching
//! the loop.

/// What the daemon tells its service manager.
pub trait Notifier: Send + Sync {
    /// The listener is bound and the state loaded (`READY=1`).
    fn ready(&self) {}
    /// The enforcement loop completed a turn (`WATCHDOG=1`). Sent from the
    /// loop itself, so a hung loop stops the pings and gets restarted.
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

/// The notifier for this environment.
pub fn from_env() -> Box<dyn Notifier> {
    Box::new(NoopNotifier)
}

//! The enforcement loop: the one task that turns time and observations into
//! decisions, by running the policy core and executing its actions.
//!
//! It wakes at the earliest of: the next deadline (a timer, so a lease
//! expiry is acted on at once, not at the next poll), the next heartbeat,
//! [`MAX_TICK`] (watchdog pace, and a bound on wall-clock jumps), a fresh
//! activity sample, a bell from the API or the terminator, or shutdown. It
//! never waits on the network: heartbeats go through a one-slot channel,
//! terminate orders to the terminator task. It pings the systemd watchdog
//! itself, so a hung loop gets the daemon restarted.

use std::sync::Arc;

use soong_protocol::heartbeat::Heartbeat;
use tokio::sync::{mpsc, watch};

use crate::policy::{Action, Inputs, MAX_TICK, Sample};
use crate::shared::{Shared, now};
use crate::systemd::Notifier;
use crate::terminator::Order;

/// The loop's connections to the other tasks.
pub struct Enforcer {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Samples from the sampler thread (if it runs).
    pub samples: mpsc::Receiver<Sample>,
    /// Orders to the terminator.
    pub terminate: mpsc::Sender<Order>,
    /// Heartbeats to the heartbeat task (if a worker is configured).
    pub heartbeats: Option<mpsc::Sender<Heartbeat>>,
    /// systemd.
    pub notifier: Arc<dyn Notifier>,
}

impl Enforcer {
    /// Runs until `stop` turns true, then persists one last time.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut samples_open = true;
        #[cfg(debug_assertions)]
        let stall = test_hooks::stall_file();
        loop {
            #[cfg(debug_assertions)]
            test_hooks::stall_while_present(stall.as_deref()).await;
            let before = now();
            let wake_at = self.shared.lock().next_wakeup(before);
            let sleep = std::time::Duration::try_from(wake_at - before)
                .unwrap_or_default()
                .min(MAX_TICK);
            let sample = tokio::select! {
                () = tokio::time::sleep(sleep) => None,
                () = self.shared.wake.notified() => None,
                sample = self.samples.recv(), if samples_open => {
                    samples_open = sample.is_some();
                    sample
                }
                _ = stop.changed() => break,
            };
            // The tick's time is read after the wait, not before it.
            let actions = self.shared.lock().on_tick(now(), Inputs { sample });
            self.execute(actions).await;
            if *stop.borrow() {
                break;
            }
        }
        let _ = self.shared.persist().await;
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Persist => {
                    // Logged inside; the core stays dirty and the next tick retries.
                    let _ = self.shared.persist().await;
                }
                Action::Terminate { reason, resumed } => {
                    if self
                        .terminate
                        .send(Order { reason, resumed })
                        .await
                        .is_err()
                    {
                        log::error!("the terminator task is gone; cannot terminate");
                    }
                }
                Action::SendHeartbeat => {
                    let Some(channel) = &self.heartbeats else {
                        continue;
                    };
                    let body = self.shared.lock().heartbeat(now());
                    match body {
                        // A full slot means the previous one is still in
                        // flight; skipping this one never blocks the loop.
                        Some(body) => {
                            let _ = channel.try_send(body);
                        }
                        None => log::debug!("heartbeat skipped: instance id or name not known yet"),
                    }
                }
                Action::NotifyWatchdog => {
                    self.notifier.watchdog();
                    let now = now();
                    let status = self.shared.lock().status(now);
                    self.notifier
                        .status(&crate::systemd::status_line(&status, now));
                }
            }
        }
    }
}

/// Test-only: a way to hang the loop from outside, so tests can prove that
/// the watchdog pings come from the loop (they stop while it hangs, and
/// systemd restarts the daemon). Compiled into debug builds only: a release
/// binary has no such switch.
#[cfg(debug_assertions)]
pub mod test_hooks {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    /// Names a file; while it exists, the enforcement loop does nothing
    /// (debug builds only).
    pub const STALL_FILE_ENV: &str = "SOONG_TEST_STALL_LOOP_FILE";

    /// The stall file, if the environment names one.
    pub fn stall_file() -> Option<PathBuf> {
        let path = std::env::var_os(STALL_FILE_ENV).filter(|p| !p.is_empty())?;
        log::warn!(
            "{STALL_FILE_ENV} is set: the enforcement loop stalls while `{}` exists (a test hook)",
            Path::new(&path).display()
        );
        Some(path.into())
    }

    /// Returns once `path` does not exist (at once when there is none).
    pub async fn stall_while_present(path: Option<&Path>) {
        let Some(path) = path else { return };
        let mut logged = false;
        while path.exists() {
            if !logged {
                log::warn!("enforcement loop stalled by the test hook");
                logged = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if logged {
            log::warn!("enforcement loop resumed");
        }
    }
}

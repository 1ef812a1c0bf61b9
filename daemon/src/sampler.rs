//! Runs the activity sampler (`activity/`) on its own thread and hands each
//! sample to the enforcement loop.
//!
//! A sample is a blocking netlink dump plus a scan of `/dev/pts`: fast, but
//! blocking. On a dedicated thread a slow or stuck sample can never stall
//! the async runtime that serves the API and enforces the deadlines; and a
//! stuck sampler only means no activity is seen, which brings the idle
//! deadline closer, never further.

use std::thread::JoinHandle;

use soong_protocol::config::ActivityConfig;
use tokio::sync::mpsc;

use crate::policy::Sample;

/// Starts the sampler thread. Interim: this build has no sampler (the
/// `activity` module lands separately), so only `POST /activity` counts and
/// the idle timeout ends an instance that is used otherwise. Said loudly.
pub fn spawn(config: &ActivityConfig, out: mpsc::Sender<Sample>) -> Option<JoinHandle<()>> {
    drop(out);
    if config.ports.is_empty() && !config.terminals {
        log::info!("activity sampling is off: only `POST /activity` counts as activity");
    } else {
        log::error!(
            "this build has no activity sampler; only `POST /activity` counts, so the idle timeout will end the instance"
        );
    }
    None
}

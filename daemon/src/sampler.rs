//! Runs the activity sampler (`activity/`) on its own thread and hands each
//! sample to the enforcement loop.
//!
//! A sample is a blocking netlink dump plus a scan of `/dev/pts`: fast, but
//! blocking. On a dedicated thread a slow or stuck sample can never stall
//! the async runtime that serves the API and enforces the deadlines; and a
//! stuck sampler only means no activity is seen, which brings the idle
//! deadline closer, never further.

use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use soong_protocol::config::ActivityConfig;
use tokio::sync::mpsc;

use crate::activity::{ActivitySampler, SamplerConfig};
use crate::logging::chain;
use crate::policy::Sample;

/// How often a persisting sampler error is logged again.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Starts the sampler thread. Returns `None` when nothing but `POST
/// /activity` counts (no ports, no terminals), or when the sampler cannot
/// start at all; the latter is logged as an error, since connections and
/// terminals will then not keep the instance alive.
pub fn spawn(config: &ActivityConfig, out: mpsc::Sender<Sample>) -> Option<JoinHandle<()>> {
    if config.ports.is_empty() && !config.terminals {
        log::info!("activity sampling is off: only `POST /activity` counts as activity");
        return None;
    }
    let sampler_config = SamplerConfig {
        ports: config.ports.clone(),
        terminals: config.terminals,
        window: config.sample_interval,
    };
    let sampler = match ActivitySampler::new(sampler_config) {
        Ok(sampler) => sampler,
        Err(err) => {
            log::error!(
                "cannot sample activity ({}); only `POST /activity` will count, so the idle timeout will end the instance",
                chain(&err)
            );
            return None;
        }
    };
    let interval = config.sample_interval;
    std::thread::Builder::new()
        .name("activity-sampler".into())
        .spawn(move || run(sampler, interval, &out))
        .map_err(|err| log::error!("cannot start the activity sampler thread: {err}"))
        .ok()
}

fn run(mut sampler: ActivitySampler, interval: Duration, out: &mpsc::Sender<Sample>) {
    let mut next = Instant::now() + interval;
    let mut last_error_log: Option<Instant> = None;
    loop {
        // Sleep to a fixed schedule, so a slow sample does not stretch the interval.
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += interval;
        if next < Instant::now() {
            next = Instant::now() + interval;
        }
        let sample = match sampler.sample(SystemTime::now()) {
            Ok(sample) => {
                if last_error_log.take().is_some() {
                    log::info!("activity sampling works again");
                }
                Sample {
                    activity: sample.activity.map(|source| source.to_string()),
                    active_connections: sample.active_connections,
                }
            }
            Err(err) => {
                if last_error_log.is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL) {
                    log::warn!("activity sample failed: {}", chain(&err));
                    last_error_log = Some(Instant::now());
                }
                continue;
            }
        };
        if out.blocking_send(sample).is_err() {
            // The enforcement loop is gone: the daemon is shutting down.
            return;
        }
    }
}

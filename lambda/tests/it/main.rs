//! The client against the simulator, over real HTTP on loopback.

mod endpoints;
mod errors;
mod pacing_and_retries;

use std::time::Duration;

use lambda_cloud::{ApiKey, Client, Pacing, RetryPolicy};
use lambda_sim::{Sim, SimConfig};

/// A simulator and a client for it, unpaced, with quick retries.
pub async fn setup() -> (Sim, Client) {
    let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
    let client = client_for(&sim, Pacing::none());
    (sim, client)
}

pub fn client_for(sim: &Sim, pacing: Pacing) -> Client {
    Client::builder(sim.api_url(), ApiKey::new(sim.api_key()))
        .pacing(pacing)
        .retry(quick_retries())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    }
}

/// How many logged requests hit `path` (suffix) with `method`.
pub fn count(sim: &Sim, method: &str, path_suffix: &str) -> usize {
    sim.request_log()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(path_suffix))
        .count()
}

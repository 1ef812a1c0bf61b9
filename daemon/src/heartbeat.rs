//! Pushes the heartbeat to the watchdog worker (DESIGN.md §3.4).
//!
//! The enforcement loop decides when a heartbeat is due and hands the body
//! over a one-slot channel without waiting; this task does the network
//! call. A slow or unreachable worker therefore delays only heartbeats,
//! never enforcement (if the slot is still full, the newer heartbeat is
//! dropped: the next one carries fresher data anyway). The worker treats a
//! missing heartbeat as a dead daemon and terminates the instance itself,
//! which is the intended failure mode.

use std::time::Duration;

use soong_protocol::config::Secret;
use soong_protocol::heartbeat::{HEARTBEAT_PATH, Heartbeat};
use tokio::sync::mpsc;

use crate::logging::chain;
use crate::settings::WorkerSettings;

/// Timeout of one heartbeat request.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a heartbeat was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    /// The HTTP client could not be built.
    #[error("cannot set up the heartbeat HTTP client")]
    Setup(#[source] reqwest::Error),
    /// The request failed (connect, TLS, timeout).
    #[error("cannot reach the worker")]
    Request(#[source] reqwest::Error),
    /// The worker answered with an error status.
    #[error("the worker answered {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
}

/// Sends heartbeats to one worker.
#[derive(Debug, Clone)]
pub struct HeartbeatClient {
    http: reqwest::Client,
    url: String,
    token: Secret,
}

impl HeartbeatClient {
    /// A client for the configured worker.
    pub fn new(worker: &WorkerSettings) -> Result<Self, HeartbeatError> {
        let http = reqwest::Client::builder()
            .timeout(HEARTBEAT_TIMEOUT)
            .build()
            .map_err(HeartbeatError::Setup)?;
        Ok(Self {
            http,
            url: format!("{}{HEARTBEAT_PATH}", worker.url.trim_end_matches('/')),
            token: worker.token.clone(),
        })
    }

    /// Sends one heartbeat.
    pub async fn send(&self, heartbeat: &Heartbeat) -> Result<(), HeartbeatError> {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(self.token.expose())
            .json(heartbeat)
            .send()
            .await
            .map_err(HeartbeatError::Request)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(HeartbeatError::Status {
                status: status.as_u16(),
            })
        }
    }
}

/// Delivers every heartbeat handed over on `heartbeats`, logging failures
/// without flooding the log: the first failure, every tenth after it, and
/// the recovery.
pub async fn run(client: HeartbeatClient, mut heartbeats: mpsc::Receiver<Heartbeat>) {
    let mut failures: u32 = 0;
    while let Some(heartbeat) = heartbeats.recv().await {
        match client.send(&heartbeat).await {
            Ok(()) => {
                if failures > 0 {
                    log::info!("heartbeat delivered again after {failures} failures");
                }
                failures = 0;
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_multiple_of(10) {
                    log::warn!(
                        "heartbeat not delivered ({failures} in a row): {}; the watchdog may terminate this instance if this persists",
                        chain(&err)
                    );
                }
            }
        }
    }
}

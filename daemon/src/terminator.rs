//! Terminates the instance through the Lambda API, the only way to stop
//! its billing (powering the OS off does not).
//!
//! The sequence of DESIGN.md §2, after the enforcement loop has persisted
//! `terminating`: log it, send a final heartbeat (bounded), run
//! `pre_terminate` (bounded, and not again after a restart), then call
//! `POST /instance-operations/terminate` for our own id until Lambda
//! confirms: the instance listed as terminating/terminated, or 404
//! `global/object-does-not-exist` (already gone). Each call is retried by
//! the client on 429/5xx/network errors, honouring `Retry-After`; between
//! calls that still fail, this task backs off exponentially (at most a
//! minute), forever. There is one terminator per process and it runs the
//! sequence once, so calls never pile up. Failure is loud: every failed
//! round is logged at error level, and `/status` and the heartbeat carry the
//! last error.

use std::sync::Arc;
use std::time::Duration;

use lambda_cloud::{CODE_OBJECT_DOES_NOT_EXIST, Client, Error, ErrorKind};
use soong_protocol::ShutdownReason;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use crate::heartbeat::HeartbeatClient;
use crate::logging::chain;
use crate::policy::Identity;
use crate::settings::Backoff;
use crate::shared::{Shared, now};

/// How long the final heartbeat may take before termination goes ahead:
/// short enough that a hung worker cannot push the terminate call past the
/// 2 s the design promises after a deadline.
pub const FINAL_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);

/// An order from the enforcement loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// Why.
    pub reason: ShutdownReason,
    /// Continuing a termination begun before a restart.
    pub resumed: bool,
}

/// The terminator task's equipment.
#[derive(Debug)]
pub struct Terminator {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The Lambda client.
    pub client: Client,
    /// The instance identity, once resolved.
    pub identity: watch::Receiver<Option<Identity>>,
    /// The worker, for the final heartbeat.
    pub heartbeat: Option<HeartbeatClient>,
    /// `pre_terminate` and its timeout.
    pub pre_terminate: Option<(String, Duration)>,
    /// Backoff between failed rounds.
    pub backoff: Backoff,
}

impl Terminator {
    /// Waits for the first order and carries it out; later orders are
    /// ignored (the core sends one per process anyway).
    pub async fn run(mut self, mut orders: mpsc::Receiver<Order>) {
        let Some(order) = orders.recv().await else {
            return;
        };
        self.execute(order).await;
        // Drain, so the loop's sends never block, until shutdown.
        while orders.recv().await.is_some() {}
    }

    async fn execute(&mut self, order: Order) {
        let id = self.shared.lock().instance_id().map(str::to_owned);
        let reason = order.reason.as_str();
        log::warn!(
            SOONG_REASON = reason, SOONG_INSTANCE_ID = id.as_deref().unwrap_or("");
            "terminating instance `{}`: {}{}",
            id.as_deref().unwrap_or("(not yet identified)"),
            order.reason,
            if order.resumed {
                " (resumed after a restart)"
            } else {
                ""
            }
        );
        self.final_heartbeat().await;
        if !order.resumed
            && let Some((command, timeout)) = &self.pre_terminate
        {
            run_pre_terminate(command, *timeout).await;
        }
        let id = self.wait_for_identity().await;
        let mut round: u32 = 0;
        loop {
            round += 1;
            self.shared.lock().terminate_attempted();
            let result = self
                .client
                .terminate_instances(std::slice::from_ref(&id))
                .await;
            let outcome = match result {
                Ok(instances) if instances.iter().any(|i| i.id == id) => Ok(()),
                Ok(_) => self.verify_gone(&id).await,
                Err(err) if gone(&err) => Ok(()),
                Err(err) => Err((chain(&err), err.retry_after())),
            };
            let Err((message, retry_after)) = outcome else {
                log::warn!(
                    SOONG_REASON = reason, SOONG_INSTANCE_ID = id.as_str();
                    "Lambda confirmed the termination of instance `{id}`"
                );
                self.shared.lock().terminate_confirmed(now());
                self.shared.wake.notify_one();
                self.final_heartbeat().await;
                return;
            };
            let wait = self.backoff.delay(round, retry_after);
            log::error!(
                SOONG_REASON = reason, SOONG_INSTANCE_ID = id.as_str();
                "terminate call {round} for instance `{id}` failed: {message}; the instance is still billing; retrying in {}s",
                wait.as_secs()
            );
            self.shared.lock().terminate_failed(message);
            self.shared.wake.notify_one();
            tokio::time::sleep(wait).await;
        }
    }

    /// The terminate answer did not list our instance: ask for it directly.
    async fn verify_gone(&self, id: &str) -> Result<(), (String, Option<Duration>)> {
        match self.client.get_instance(id).await {
            Ok(instance) if instance.status.is_ending() => Ok(()),
            Ok(instance) => Err((
                format!(
                    "terminate answered without the instance, which is still `{}`",
                    instance.status
                ),
                None,
            )),
            Err(err) if gone(&err) => Ok(()),
            Err(err) => Err((chain(&err), err.retry_after())),
        }
    }

    async fn wait_for_identity(&mut self) -> String {
        let mut complained = false;
        loop {
            if let Some(identity) = self.identity.borrow_and_update().as_ref() {
                return identity.id.clone();
            }
            if !complained {
                log::error!(
                    "a termination is due but the instance id is not known yet; it will be called as soon as the id is resolved"
                );
                self.shared
                    .lock()
                    .terminate_failed("instance id not resolved yet".to_owned());
                complained = true;
            }
            if self.identity.changed().await.is_err() {
                // The resolver gave up for good (no id, no name). Nothing
                // can be called; stay here so the state stays terminating.
                std::future::pending::<()>().await;
            }
        }
    }

    async fn final_heartbeat(&self) {
        let Some(client) = &self.heartbeat else {
            return;
        };
        let Some(body) = self.shared.lock().heartbeat(now()) else {
            return;
        };
        match tokio::time::timeout(FINAL_HEARTBEAT_TIMEOUT, client.send(&body)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => log::warn!("final heartbeat not delivered: {}", chain(&err)),
            Err(_) => log::warn!("final heartbeat timed out; terminating anyway"),
        }
    }
}

/// 404 `global/object-does-not-exist`: the instance is already gone.
///
/// Only that code counts. Any other "not found" (a wrong `api_url` answering
/// `global/not-found`, a proxy's HTML 404) says nothing about the instance,
/// and taking it for "gone" would stop the daemon while the bill runs on.
fn gone(err: &Error) -> bool {
    err.kind() == ErrorKind::NotFound && err.code() == Some(CODE_OBJECT_DOES_NOT_EXIST)
}

/// Runs `pre_terminate` with `/bin/sh -c`, killing it at the timeout. Its
/// outcome is logged and otherwise ignored: nothing may hold up termination.
async fn run_pre_terminate(command: &str, timeout: Duration) {
    log::info!("running pre_terminate (at most {}s)", timeout.as_secs());
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        // Only the daemon itself may notify systemd (`NotifyAccess=main`).
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            log::error!("cannot start pre_terminate: {err}");
            return;
        }
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => log::info!("pre_terminate finished"),
        Ok(Ok(status)) => log::warn!("pre_terminate failed ({status}); terminating anyway"),
        Ok(Err(err)) => log::warn!("cannot wait for pre_terminate: {err}; terminating anyway"),
        Err(_) => {
            log::warn!(
                "pre_terminate still running after {}s; killing it and terminating",
                timeout.as_secs()
            );
            let _ = child.kill().await;
        }
    }
}

//! Talking to an instance's daemon (DESIGN.md §3.2) with the wire types of
//! `soong-protocol`.
//!
//! Two transports are planned: SSH to the daemon's loopback listener (the
//! default, with the host key pinned) and plain HTTP to `<ip>:<port>`
//! (`status_daemon.access: direct`, which the simulator and the demo use).
//! Only the direct one exists yet; SSH mode says so instead of pretending.

use std::time::Duration;

use serde::de::DeserializeOwned;
use soong_protocol::api::{
    ErrorBody, ExtendRequest, ExtendResponse, HealthResponse, ShutdownRequest, ShutdownResponse,
    StatusResponse,
};
use soong_protocol::config::Secret;

use crate::settings::{Access, Settings};

/// A daemon call that did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// SSH transport is a later change.
    #[error("reaching the daemon over SSH is not yet supported")]
    SshNotSupported,
    /// The instance has no IP yet.
    #[error("instance `{0}` has no IP address yet")]
    NoAddress(String),
    /// Nothing answered (refused, timed out, reset).
    #[error("the daemon at {url} did not answer")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The daemon answered with an error.
    #[error("the daemon refused: {message} (HTTP {status}, `{code}`)")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The daemon's code (`lease_at_maximum`, …).
        code: String,
        /// The daemon's message.
        message: String,
    },
    /// The answer is not what the protocol says.
    #[error("the daemon's answer cannot be read")]
    Decode(#[source] reqwest::Error),
}

impl DaemonError {
    /// The hint for a user.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::SshNotSupported => Some(
                "set `status_daemon.access: direct` in the config (the daemon must listen on the instance's address)"
                    .to_owned(),
            ),
            Self::Unreachable { .. } => Some(
                "the daemon may still be starting, or dead; if dead, nothing but the hard deadline stops this instance: `soong stop`"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// A client for one daemon.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    base: String,
    token: Secret,
    http: reqwest::Client,
}

impl DaemonClient {
    /// A client for the daemon of `instance`, per the settings' access mode.
    pub fn for_instance(
        settings: &Settings,
        token: &Secret,
        instance: &lambda_cloud::Instance,
        timeout: Duration,
    ) -> Result<Self, DaemonError> {
        if settings.config.status_daemon.access == Access::Ssh {
            return Err(DaemonError::SshNotSupported);
        }
        let ip = instance
            .ip
            .as_deref()
            .ok_or_else(|| DaemonError::NoAddress(instance.id.clone()))?;
        Ok(Self::direct(
            &format!("http://{ip}:{}", settings.config.status_daemon.port),
            token,
            timeout,
        ))
    }

    /// A client for the daemon at `base` (`http://host:port`).
    pub fn direct(base: &str, token: &Secret, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.clone(),
            http,
        }
    }

    /// Where the daemon is.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, DaemonError> {
        let response = request
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|source| DaemonError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return response.json::<T>().await.map_err(DaemonError::Decode);
        }
        let body = response.json::<ErrorBody>().await.ok();
        Err(DaemonError::Refused {
            status: status.as_u16(),
            code: body
                .as_ref()
                .map_or_else(String::new, |b| b.error.code.clone()),
            message: body.map_or_else(
                || status.canonical_reason().unwrap_or("error").to_owned(),
                |b| b.error.message,
            ),
        })
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<HealthResponse, DaemonError> {
        self.call(self.http.get(format!("{}/health", self.base)))
            .await
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<StatusResponse, DaemonError> {
        self.call(self.http.get(format!("{}/status", self.base)))
            .await
    }

    /// `POST /extend`.
    pub async fn extend(&self, hours: f64) -> Result<ExtendResponse, DaemonError> {
        self.call(
            self.http
                .post(format!("{}/extend", self.base))
                .json(&ExtendRequest { hours }),
        )
        .await
    }

    /// `POST /shutdown`.
    pub async fn shutdown(&self, reason: &str) -> Result<ShutdownResponse, DaemonError> {
        self.call(
            self.http
                .post(format!("{}/shutdown", self.base))
                .json(&ShutdownRequest {
                    reason: Some(reason.to_owned()),
                }),
        )
        .await
    }
}

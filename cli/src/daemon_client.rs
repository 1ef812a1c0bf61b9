//! Talking to an instance's daemon (DESIGN.md §3.2) with the wire types of
//! `soong-protocol`.
//!
//! Two transports: SSH to the daemon's loopback listener (the default):
//! an `ssh -N -L` local forward with the instance's pinned host key, or a
//! soong tunnel already running for the instance; and plain HTTP to
//! `<ip>:<port>` (`status_daemon.access: direct`, which the simulator and
//! the demo use). Either way the token travels only in the HTTP
//! `Authorization` header, never on a command line, local or remote.

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
    /// The SSH forward to the daemon could not be set up.
    #[error("cannot reach the daemon over SSH")]
    Ssh(#[source] crate::ssh::SshError),
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
            Self::Ssh(error) => error.hint(),
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
    /// The SSH forward the calls go through; it ends with the last clone.
    forward: Option<std::sync::Arc<crate::ssh::Forward>>,
}

impl DaemonClient {
    /// A client for the daemon of `instance`, per the settings' access
    /// mode; over SSH, through the instance's soong tunnel when one runs,
    /// else through a forward of its own.
    pub async fn for_instance(
        settings: &Settings,
        token: &Secret,
        instance: &lambda_cloud::Instance,
        timeout: Duration,
    ) -> Result<Self, DaemonError> {
        if settings.config.status_daemon.access == Access::Ssh {
            if let Some(local) = crate::tunnel::daemon_address(settings, &instance.id).await {
                log::debug!("reaching the daemon through the soong tunnel at {local}");
                return Ok(Self::direct(&format!("http://{local}"), token, timeout));
            }
            let target =
                crate::ssh::Target::for_instance(settings, instance).map_err(DaemonError::Ssh)?;
            // Logging in takes longer than an HTTP call.
            let forward = crate::ssh::Forward::open(
                &target,
                settings.config.status_daemon.port,
                timeout.max(Duration::from_secs(10)),
            )
            .await
            .map_err(DaemonError::Ssh)?;
            let mut client = Self::direct(&format!("http://{}", forward.local), token, timeout);
            client.forward = Some(std::sync::Arc::new(forward));
            return Ok(client);
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
            forward: None,
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

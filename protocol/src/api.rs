//! The daemon's HTTP API (DESIGN.md §3.2): request and response bodies.
//!
//! The daemon serialises these and the CLI deserialises them, so the two
//! cannot drift apart. Requests are parsed strictly (`deny_unknown_fields`:
//! a misspelt `{"hour": 2}` is an error, not a silent no-op); responses are
//! read tolerantly, so an older CLI can talk to a newer daemon.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::lease::{Extension, ShutdownReason};

/// The largest request body the daemon reads; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// `GET /health`: `{"status":"ok"}`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// Always `"ok"` when the daemon answers.
    pub status: String,
}

impl HealthResponse {
    /// The only health answer there is.
    pub fn ok() -> Self {
        Self {
            status: "ok".to_owned(),
        }
    }
}

/// Whether the daemon is still guarding a running instance or has begun
/// terminating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonState {
    /// Enforcing deadlines.
    Running,
    /// A termination was triggered; the daemon keeps calling the API until
    /// Lambda confirms it.
    Terminating,
}

impl DaemonState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Terminating => "terminating",
        }
    }
}

/// `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// The Lambda instance id, once known.
    pub instance_id: Option<String>,
    /// The Lambda instance name, once known.
    pub instance_name: Option<String>,
    /// `running` or `terminating`.
    pub state: DaemonState,
    /// Why the daemon is terminating, when it is.
    pub terminate_reason: Option<ShutdownReason>,
    /// The free-text reason given to `POST /shutdown`, if any.
    #[serde(default)]
    pub terminate_detail: Option<String>,
    /// When termination began.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub terminating_since: Option<OffsetDateTime>,
    /// Terminate calls made so far.
    #[serde(default)]
    pub terminate_attempts: u32,
    /// Whether Lambda confirmed the termination.
    #[serde(default)]
    pub terminate_confirmed: bool,
    /// The last terminate failure, while termination has not been confirmed.
    #[serde(default)]
    pub terminate_error: Option<String>,
    /// When the CLI's launch call succeeded.
    #[serde(with = "time::serde::rfc3339")]
    pub launched_at: OffsetDateTime,
    /// Seconds since `launched_at`.
    pub uptime_seconds: u64,
    /// When the instance will be terminated if nothing changes.
    #[serde(with = "time::serde::rfc3339")]
    pub shutdown_at: OffsetDateTime,
    /// The layer that gives `shutdown_at`.
    pub shutdown_reason: ShutdownReason,
    /// `last_activity + idle_timeout`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub idle_deadline: Option<OffsetDateTime>,
    /// The lease deadline, extensions included.
    #[serde(with = "time::serde::rfc3339")]
    pub lease_deadline: OffsetDateTime,
    /// How far extensions can push the lease.
    #[serde(with = "time::serde::rfc3339")]
    pub max_lease_deadline: OffsetDateTime,
    /// The hard deadline; nothing moves it.
    #[serde(with = "time::serde::rfc3339")]
    pub hard_deadline: OffsetDateTime,
    /// The idle timeout in seconds.
    pub idle_timeout_seconds: u64,
    /// Seconds since the last activity.
    pub idle_seconds: u64,
    /// The last time anything counted as activity.
    #[serde(with = "time::serde::rfc3339")]
    pub last_activity: OffsetDateTime,
    /// What that activity was (`connection:8000`, `terminal:pts/0`, `api`), if known.
    pub last_activity_source: Option<String>,
    /// TCP connections to the activity ports at the last sample.
    pub active_connections: usize,
    /// Every extension granted, oldest first.
    pub extensions: Vec<Extension>,
    /// The instance's price, once known from the API.
    pub price_cents_per_hour: Option<u64>,
}

/// `POST /activity` → the new `last_activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityResponse {
    /// The idle clock now counts from here.
    #[serde(with = "time::serde::rfc3339")]
    pub last_activity: OffsetDateTime,
}

/// `POST /extend` body: `{"hours": 2}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// How many hours to add to the lease; a positive number, fractions allowed.
    pub hours: f64,
}

/// `POST /extend` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendResponse {
    /// The new lease deadline.
    #[serde(with = "time::serde::rfc3339")]
    pub lease_deadline: OffsetDateTime,
    /// Seconds actually added.
    pub granted_seconds: u64,
    /// Seconds asked for.
    pub requested_seconds: u64,
    /// Whether `max_lease` cut the extension short.
    pub capped: bool,
}

/// `POST /shutdown` body (optional): `{"reason": "done for today"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownRequest {
    /// Free text for the logs and `/status`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The longest `reason` accepted by `POST /shutdown`, in characters.
pub const MAX_SHUTDOWN_REASON_CHARS: usize = 512;

/// `POST /shutdown` answer (status 202).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownResponse {
    /// Always `terminating`.
    pub state: DaemonState,
}

/// Every error the daemon returns: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable machine-readable code (see [`error_code`]).
    pub code: String,
    /// One sentence for a person.
    pub message: String,
}

impl ErrorBody {
    /// An error body with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }
}

/// The codes in [`ErrorDetail::code`].
pub mod error_code {
    /// 401: no or wrong bearer token.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 400: the body is not JSON.
    pub const INVALID_JSON: &str = "invalid_json";
    /// 422: JSON of the wrong shape or out of range.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// 404: no such endpoint.
    pub const NOT_FOUND: &str = "not_found";
    /// 405: the endpoint exists, the method does not.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 409: the lease is at `max_lease`.
    pub const LEASE_AT_MAXIMUM: &str = "lease_at_maximum";
    /// 409: the instance is being terminated; nothing can stop that.
    pub const TERMINATING: &str = "terminating";
    /// 413: body over [`super::MAX_BODY_BYTES`].
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 500: the daemon could not do what it should (for example, persist state).
    pub const INTERNAL: &str = "internal";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_have_the_documented_shape() {
        let body = ErrorBody::new(error_code::UNAUTHORIZED, "missing bearer token");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"error": {"code": "unauthorized", "message": "missing bearer token"}})
        );
    }

    #[test]
    fn extend_requests_refuse_unknown_fields() {
        assert!(serde_json::from_str::<ExtendRequest>(r#"{"hour": 2}"#).is_err());
        assert_eq!(
            serde_json::from_str::<ExtendRequest>(r#"{"hours": 2}"#).unwrap(),
            ExtendRequest { hours: 2.0 }
        );
    }

    #[test]
    fn health_is_only_status_ok() {
        assert_eq!(
            serde_json::to_string(&HealthResponse::ok()).unwrap(),
            r#"{"status":"ok"}"#
        );
    }
}

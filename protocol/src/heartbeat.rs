//! The heartbeat the daemon pushes to the watchdog worker (DESIGN.md §3.4).
//!
//! The worker terminates an instance whose heartbeat is missing, stale or
//! overdue, so everything it needs to judge "overdue" travels here: the
//! daemon's own `shutdown_at` and any failure to terminate.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::api::DaemonState;
use crate::lease::ShutdownReason;

/// The path the heartbeat is POSTed to, relative to the worker's URL.
pub const HEARTBEAT_PATH: &str = "/heartbeat";

/// `POST /heartbeat` body. Sent with `Authorization: Bearer <token>`, where
/// the token is `hex(HMAC-SHA256(WORKER_SECRET, instance_name))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The Lambda instance id.
    pub instance_id: String,
    /// The Lambda instance name (the worker's token is derived from it).
    pub instance_name: String,
    /// When the daemon sent this (the worker also stamps its receive time).
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// `running` or `terminating`.
    pub state: DaemonState,
    /// When the daemon will (or did) trigger termination.
    #[serde(with = "time::serde::rfc3339")]
    pub shutdown_at: OffsetDateTime,
    /// Why.
    pub shutdown_reason: ShutdownReason,
    /// The last terminate failure, while termination is unconfirmed.
    pub terminate_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn heartbeat_serialises_as_documented() {
        let at = datetime!(2026-12-01 10:00:00 UTC);
        let heartbeat = Heartbeat {
            instance_id: "i-1".into(),
            instance_name: "soong-a".into(),
            sent_at: at,
            state: DaemonState::Running,
            shutdown_at: at,
            shutdown_reason: ShutdownReason::LeaseExpired,
            terminate_error: None,
        };
        assert_eq!(
            serde_json::to_value(&heartbeat).unwrap(),
            serde_json::json!({
                "instance_id": "i-1", "instance_name": "soong-a",
                "sent_at": "2026-12-01T10:00:00Z", "state": "running",
                "shutdown_at": "2026-12-01T10:00:00Z", "shutdown_reason": "lease_expired",
                "terminate_error": null
            })
        );
    }
}

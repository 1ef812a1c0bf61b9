//! soong tunnels: long-lived `ssh -N -L` forwards to an instance's SGLang,
//! n8n and daemon ports, tracked exactly.

use std::net::SocketAddr;

use crate::settings::Settings;

/// The local address of the daemon forward of a live soong tunnel to
/// `instance_id`, if one runs and answers. (No tunnels exist yet.)
#[allow(clippy::unused_async)]
pub async fn daemon_address(_settings: &Settings, _instance_id: &str) -> Option<SocketAddr> {
    None
}

//! soong-daemon: the on-instance cost guard (DESIGN.md §2, §3.2).
//!
//! An I/O-free policy core ([`policy`]) decides; a thin shell executes:
//! [`enforcer`] (the loop and its timers), [`terminator`], [`heartbeat`],
//! [`identity`], [`sampler`] (over [`activity`]), [`server`] (the HTTP
//! API, and the [`dashboard`] page), [`state`] (persistence) and [`systemd`] (the notify seam).
//! [`serve`] assembles them; [`cli`] is the binary.

pub mod activity;
pub mod args;
pub mod cli;
pub mod daemon;
pub mod dashboard;
pub mod enforcer;
pub mod heartbeat;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod sampler;
pub mod server;
pub mod settings;
pub mod shared;
pub mod state;
pub mod systemd;
pub mod terminator;

pub use daemon::{ServeError, serve, serve_with};
pub use settings::Settings;

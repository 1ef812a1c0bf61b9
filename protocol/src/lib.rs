//! Wire types shared by the soong CLI, the on-instance daemon and the
//! watchdog worker, and the lease arithmetic they all agree on.
//!
//! - [`api`]: the daemon's HTTP API bodies (DESIGN.md §3.2).
//! - [`config`]: the daemon's YAML config file, parsed then checked.
//! - [`heartbeat`]: the body the daemon pushes to the worker (§3.4).
//! - [`tags`]: the launch tags an instance carries (§3.1).
//! - [`lease`]: deadlines, extensions and `shutdown_at` (§2), as pure functions.
//! - [`duration`]: `"90s"`/`"30m"`/`"4h"` durations.
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod duration;
pub mod heartbeat;
pub mod lease;
pub mod tags;

pub use lease::{Deadlines, Extension, Grant, Ledger, Policy, ShutdownReason};

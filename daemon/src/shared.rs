//! The state every task shares: the policy core behind a mutex, the state
//! store, and the bell that wakes the enforcement loop.
//!
//! The mutex is a plain `std` one and is never held across an `.await`:
//! every critical section is a few field updates, so no task can stall
//! another for longer than that. A poisoned lock is taken over rather than
//! propagated: the guard must keep guarding even after a bug panicked a
//! request handler.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::policy::Core;
use crate::state::{StateError, StateStore};

/// Shared by the server, the enforcement loop, the terminator and the
/// identity resolver.
#[derive(Debug)]
pub struct Shared {
    core: Mutex<Core>,
    store: StateStore,
    /// Rung when something changed that the enforcement loop must act on
    /// now rather than at its next timer (a shutdown request, an extension,
    /// a confirmed termination).
    pub wake: Notify,
}

impl Shared {
    /// Wraps a core and its store.
    pub fn new(core: Core, store: StateStore) -> Arc<Self> {
        Arc::new(Self {
            core: Mutex::new(core),
            store,
            wake: Notify::new(),
        })
    }

    /// The core, for a short critical section.
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state store.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Writes the current state to disk now (off the async threads), and
    /// marks it dirty again if that fails, so the loop retries.
    pub async fn persist(self: &Arc<Self>) -> Result<(), StateError> {
        let (generation, state) = self.lock().take_snapshot(now());
        let this = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || this.store.save(generation, &state))
            .await
            .unwrap_or_else(|join| {
                Err(StateError::Write {
                    file: self.store.path(),
                    source: std::io::Error::other(join.to_string()),
                })
            });
        if let Err(err) = &result {
            self.lock().persist_failed();
            log::error!(
                "{}; the deadlines hold in memory, but a restart now would fall back to conservative values",
                crate::logging::chain(err)
            );
        }
        result.map(|_| ())
    }
}

/// The wall clock, UTC. The only place the shell reads it.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

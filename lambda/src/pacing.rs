//! Client-side pacing, so the API's rate limits are met before they are hit.
//!
//! Lambda allows about one request per second per account, and one launch
//! every 12 seconds. A [`Pacer`] hands out time slots: each request waits for
//! the next free slot, and a launch also waits for the next launch slot. The
//! pacer sits behind an `Arc` in the client, so every clone of a client shares
//! one budget, which is what the account-wide limit needs.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// How fast a client may call the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Minimum spacing between any two requests.
    pub request_interval: Duration,
    /// Minimum spacing between two launches.
    pub launch_interval: Duration,
}

impl Default for Pacing {
    /// Lambda's documented limits: 1 request/s, one launch per 12 s.
    fn default() -> Self {
        Self {
            request_interval: Duration::from_secs(1),
            launch_interval: Duration::from_secs(12),
        }
    }
}

impl Pacing {
    /// No pacing at all: for tests against a simulator with rate limits off.
    pub fn none() -> Self {
        Self {
            request_interval: Duration::ZERO,
            launch_interval: Duration::ZERO,
        }
    }
}

/// Which budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestClass {
    Ordinary,
    Launch,
}

#[derive(Debug)]
struct Slots {
    next_request: Instant,
    next_launch: Instant,
}

/// Hands out request slots according to a [`Pacing`].
#[derive(Debug)]
pub(crate) struct Pacer {
    pacing: Pacing,
    slots: Mutex<Slots>,
}

impl Pacer {
    pub(crate) fn new(pacing: Pacing) -> Self {
        let now = Instant::now();
        Self {
            pacing,
            slots: Mutex::new(Slots {
                next_request: now,
                next_launch: now,
            }),
        }
    }

    /// Waits until this request may be sent. The slot is reserved before
    /// sleeping, so concurrent callers queue up instead of all waking at once.
    pub(crate) async fn wait(&self, class: RequestClass) {
        let slot = {
            let mut slots = self.slots.lock().await;
            let mut slot = Instant::now().max(slots.next_request);
            if class == RequestClass::Launch {
                slot = slot.max(slots.next_launch);
                slots.next_launch = slot + self.pacing.launch_interval;
            }
            slots.next_request = slot + self.pacing.request_interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_by_the_interval_and_launches_by_theirs() {
        let pacer = Pacer::new(Pacing::default());
        let start = Instant::now();
        pacer.wait(RequestClass::Launch).await;
        pacer.wait(RequestClass::Ordinary).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        pacer.wait(RequestClass::Launch).await;
        assert_eq!(start.elapsed(), Duration::from_secs(12));
        pacer.wait(RequestClass::Ordinary).await;
        assert_eq!(start.elapsed(), Duration::from_secs(13));
    }
}

//! When and how long to wait before repeating a request that is safe to repeat.
//!
//! Only requests whose repetition cannot do harm are retried: reads, and
//! terminate (terminating twice is the same as once). A launch is never
//! repeated here: a launch whose answer was lost may have succeeded, and a
//! second one would bill twice. The caller decides that, by looking for the
//! instance's name first.

use std::time::Duration;

use rand::Rng;

use crate::Error;

/// The longest `Retry-After` obeyed as given.
const RETRY_AFTER_CEILING: Duration = Duration::from_secs(300);

/// How a client retries idempotent requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first one included. 1 disables retries.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles for each one after.
    pub base_delay: Duration,
    /// Upper bound for one backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before attempt `attempt + 1`, given the error of attempt
    /// `attempt` (1-based), or `None` when the request should not be repeated.
    pub(crate) fn backoff(&self, attempt: u32, error: &Error) -> Option<Duration> {
        if attempt >= self.max_attempts || !error.is_transient() {
            return None;
        }
        // "Full jitter": a uniformly random wait up to the exponential bound,
        // so that many clients failing together do not retry together.
        let exponential = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.max_delay);
        let jittered = rand::rng().random_range(Duration::ZERO..=exponential);
        // The server's Retry-After is a floor, not a suggestion; only an
        // absurd one (a misconfigured proxy) is cut down to a ceiling.
        Some(match error.retry_after() {
            Some(asked) => jittered.max(asked.min(RETRY_AFTER_CEILING)),
            None => jittered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_limited(retry_after: Option<Duration>) -> Error {
        Error::Api {
            status: 429,
            code: crate::error::CODE_TOO_MANY_REQUESTS.into(),
            message: "slow down".into(),
            suggestion: None,
            retry_after,
        }
    }

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let policy = RetryPolicy::default();
        for attempt in 1..5 {
            let wait = policy.backoff(attempt, &rate_limited(None)).unwrap();
            assert!(wait <= policy.max_delay);
            assert!(wait <= policy.base_delay * (1 << (attempt - 1)));
        }
        let wait = policy
            .backoff(1, &rate_limited(Some(Duration::from_secs(7))))
            .unwrap();
        assert!(wait >= Duration::from_secs(7));
        assert_eq!(policy.backoff(5, &rate_limited(None)), None);
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let not_found = Error::Api {
            status: 404,
            code: crate::error::CODE_OBJECT_DOES_NOT_EXIST.into(),
            message: "gone".into(),
            suggestion: None,
            retry_after: None,
        };
        assert_eq!(RetryPolicy::default().backoff(1, &not_found), None);
    }
}

//! The cost-control arithmetic of DESIGN.md §2, as plain functions over plain data.
//!
//! Nothing here reads a clock or a file: every instant is passed in. The
//! daemon's policy core, the CLI's cost estimate and the tests all compute
//! deadlines with these same functions, so they cannot disagree.
//!
//! The invariants, checked by the property tests at the bottom:
//! - no sequence of extensions moves the lease past `launched_at + max_lease`;
//! - nothing moves the hard deadline (it depends on `launched_at` alone);
//! - activity moves only the idle deadline, never the lease.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The longest value any policy duration may take. Beyond this a typo
/// (`4000h`) is more likely than intent, and the arithmetic stays far from
/// the edge of the calendar.
pub const MAX_POLICY_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// The largest extension one request may ask for, in hours. Asking for more
/// than the remaining lease is fine (the remainder is granted); asking for
/// more than this is a malformed request.
pub const MAX_EXTEND_HOURS: f64 = 366.0 * 24.0;

/// The four durations that decide when an instance stops costing money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// How long the instance may sit without activity (default 30 min).
    #[serde(with = "crate::duration::human")]
    pub idle_timeout: Duration,
    /// The lease granted at launch (default 4 h).
    #[serde(with = "crate::duration::human")]
    pub lease: Duration,
    /// How far extensions may push the lease, counted from launch (default 8 h).
    #[serde(with = "crate::duration::human")]
    pub max_lease: Duration,
    /// The absolute limit, counted from launch; nothing extends it (default 8 h).
    #[serde(with = "crate::duration::human")]
    pub hard_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            lease: Duration::from_secs(4 * 3600),
            max_lease: Duration::from_secs(8 * 3600),
            hard_timeout: Duration::from_secs(8 * 3600),
        }
    }
}

/// A policy that parses but cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyProblem {
    /// A duration of zero would terminate the instance at once.
    #[error("`policy.{key}` must be longer than zero")]
    Zero {
        /// The offending key.
        key: &'static str,
    },
    /// A duration over [`MAX_POLICY_DURATION`].
    #[error("`policy.{key}` is {value}, more than the limit of {limit}")]
    TooLong {
        /// The offending key.
        key: &'static str,
        /// Its value, formatted.
        value: String,
        /// The limit, formatted.
        limit: String,
    },
    /// The initial lease is longer than any extension could reach.
    #[error("`policy.lease` ({lease}) is longer than `policy.max_lease` ({max_lease})")]
    LeaseExceedsMaxLease {
        /// `policy.lease`, formatted.
        lease: String,
        /// `policy.max_lease`, formatted.
        max_lease: String,
    },
    /// Extensions could be granted that the hard timeout would never honour.
    #[error(
        "`policy.max_lease` ({max_lease}) is longer than `policy.hard_timeout` ({hard_timeout})"
    )]
    MaxLeaseExceedsHardTimeout {
        /// `policy.max_lease`, formatted.
        max_lease: String,
        /// `policy.hard_timeout`, formatted.
        hard_timeout: String,
    },
}

impl Policy {
    /// Every reason this policy cannot hold; empty when it is sound.
    pub fn problems(&self) -> Vec<PolicyProblem> {
        let fmt = crate::duration::format;
        let mut problems = Vec::new();
        for (key, value) in [
            ("idle_timeout", self.idle_timeout),
            ("lease", self.lease),
            ("max_lease", self.max_lease),
            ("hard_timeout", self.hard_timeout),
        ] {
            if value.is_zero() {
                problems.push(PolicyProblem::Zero { key });
            } else if value > MAX_POLICY_DURATION {
                problems.push(PolicyProblem::TooLong {
                    key,
                    value: fmt(value),
                    limit: fmt(MAX_POLICY_DURATION),
                });
            }
        }
        if self.lease > self.max_lease {
            problems.push(PolicyProblem::LeaseExceedsMaxLease {
                lease: fmt(self.lease),
                max_lease: fmt(self.max_lease),
            });
        }
        if self.max_lease > self.hard_timeout {
            problems.push(PolicyProblem::MaxLeaseExceedsHardTimeout {
                max_lease: fmt(self.max_lease),
                hard_timeout: fmt(self.hard_timeout),
            });
        }
        problems
    }
}

/// Which layer ends the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownReason {
    /// No activity for `idle_timeout`.
    IdleTimeout,
    /// The lease (with its extensions) ran out.
    LeaseExpired,
    /// `launched_at + hard_timeout` passed.
    HardTimeout,
    /// Someone asked for it (`POST /shutdown`, `soong stop`).
    ShutdownRequested,
}

impl ShutdownReason {
    /// The wire spelling (`idle_timeout`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdleTimeout => "idle_timeout",
            Self::LeaseExpired => "lease_expired",
            Self::HardTimeout => "hard_timeout",
            Self::ShutdownRequested => "shutdown_requested",
        }
    }
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `instant + duration`, saturating at the end of the calendar instead of
/// panicking: a deadline that far away is as good as never, and a panic in
/// the enforcement loop would be worse than either.
pub fn add(instant: OffsetDateTime, duration: Duration) -> OffsetDateTime {
    let secs = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
    let nanos = i32::try_from(duration.subsec_nanos()).unwrap_or(0);
    instant.saturating_add(time::Duration::new(secs, nanos))
}

/// The time from `earlier` to `later`, zero when `later` is not later.
pub fn between(earlier: OffsetDateTime, later: OffsetDateTime) -> Duration {
    Duration::try_from(later - earlier).unwrap_or(Duration::ZERO)
}

/// `launched_at + lease`: the lease deadline before any extension.
pub fn initial_lease_deadline(launched_at: OffsetDateTime, policy: &Policy) -> OffsetDateTime {
    add(launched_at, policy.lease).min(max_lease_deadline(launched_at, policy))
}

/// `launched_at + max_lease`: how far extensions can reach.
pub fn max_lease_deadline(launched_at: OffsetDateTime, policy: &Policy) -> OffsetDateTime {
    add(launched_at, policy.max_lease)
}

/// `launched_at + hard_timeout`. Takes nothing else, so nothing else can move it.
pub fn hard_deadline(launched_at: OffsetDateTime, policy: &Policy) -> OffsetDateTime {
    add(launched_at, policy.hard_timeout)
}

/// `last_activity + idle_timeout`.
pub fn idle_deadline(last_activity: OffsetDateTime, policy: &Policy) -> OffsetDateTime {
    add(last_activity, policy.idle_timeout)
}

/// `min(idle, lease, hard)` and the layer that gives it. On a tie the
/// stronger layer is named (hard, then lease, then idle), because that is
/// the one the user cannot do anything about.
pub fn shutdown_at(
    idle: OffsetDateTime,
    lease: OffsetDateTime,
    hard: OffsetDateTime,
) -> (OffsetDateTime, ShutdownReason) {
    let mut best = (hard, ShutdownReason::HardTimeout);
    if lease < best.0 {
        best = (lease, ShutdownReason::LeaseExpired);
    }
    if idle < best.0 {
        best = (idle, ShutdownReason::IdleTimeout);
    }
    best
}

/// All deadlines of one instance at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// `last_activity + idle_timeout`.
    pub idle: OffsetDateTime,
    /// The lease deadline, extensions included.
    pub lease: OffsetDateTime,
    /// `launched_at + max_lease`.
    pub max_lease: OffsetDateTime,
    /// `launched_at + hard_timeout`.
    pub hard: OffsetDateTime,
}

impl Deadlines {
    /// `shutdown_at` and its reason (see [`shutdown_at`]).
    pub fn shutdown(&self) -> (OffsetDateTime, ShutdownReason) {
        shutdown_at(self.idle, self.lease, self.hard)
    }
}

/// What an accepted extension did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The new lease deadline.
    pub lease_deadline: OffsetDateTime,
    /// How much later the lease now ends.
    pub granted: Duration,
    /// How much was asked for.
    pub requested: Duration,
    /// Whether less was granted than asked for, because of `max_lease`.
    pub capped: bool,
}

/// Why an extension was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtendError {
    /// The lease already ends at `launched_at + max_lease`.
    #[error("the lease is already at its maximum (`max_lease`); it cannot be extended further")]
    AtCap {
        /// Where the lease ends, for good.
        max_lease_deadline: OffsetDateTime,
    },
}

/// `extend(h)` of DESIGN.md §2: `min(lease_deadline + h, max_lease_deadline)`.
/// Asking past the cap grants the remainder; at the cap it is refused.
pub fn extend(
    lease_deadline: OffsetDateTime,
    max_lease_deadline: OffsetDateTime,
    requested: Duration,
) -> Result<Grant, ExtendError> {
    let current = lease_deadline.min(max_lease_deadline);
    let wanted = add(current, requested);
    let new = wanted.min(max_lease_deadline);
    if new <= current {
        return Err(ExtendError::AtCap { max_lease_deadline });
    }
    Ok(Grant {
        lease_deadline: new,
        granted: between(current, new),
        requested,
        capped: new < wanted,
    })
}

/// Why a number of hours is not an extension.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum HoursError {
    /// NaN or infinite.
    #[error("`hours` must be a finite number")]
    NotFinite,
    /// Zero or negative.
    #[error("`hours` must be greater than zero")]
    NotPositive,
    /// Rounds to less than one second.
    #[error("`hours` must be at least one second (0.0003)")]
    TooSmall,
    /// More than [`MAX_EXTEND_HOURS`].
    #[error("`hours` must be at most {max}")]
    TooLarge {
        /// The limit.
        max: f64,
    },
}

/// Turns a requested number of hours into whole seconds, refusing what
/// cannot be meant.
pub fn hours_to_duration(hours: f64) -> Result<Duration, HoursError> {
    if !hours.is_finite() {
        return Err(HoursError::NotFinite);
    }
    if hours <= 0.0 {
        return Err(HoursError::NotPositive);
    }
    if hours > MAX_EXTEND_HOURS {
        return Err(HoursError::TooLarge {
            max: MAX_EXTEND_HOURS,
        });
    }
    let seconds = (hours * 3600.0).round();
    if seconds < 1.0 {
        return Err(HoursError::TooSmall);
    }
    // In range by the checks above: at most 366 * 24 * 3600.
    Ok(Duration::from_secs(seconds as u64))
}

/// One accepted extension, as recorded in the daemon's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// When it was granted.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Seconds asked for.
    pub requested_seconds: u64,
    /// Seconds granted.
    pub granted_seconds: u64,
}

/// The facts the deadlines are computed from: when the instance was
/// launched, where its lease ends, how it got there, and when it was last
/// used. The daemon persists exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// When the CLI's launch call succeeded.
    #[serde(with = "time::serde::rfc3339")]
    pub launched_at: OffsetDateTime,
    /// The lease deadline, extensions included.
    #[serde(with = "time::serde::rfc3339")]
    pub lease_deadline: OffsetDateTime,
    /// Every extension granted, oldest first.
    #[serde(default)]
    pub extensions: Vec<Extension>,
    /// The last time anything counted as activity.
    #[serde(with = "time::serde::rfc3339")]
    pub last_activity: OffsetDateTime,
}

impl Ledger {
    /// A fresh ledger: the initial lease, no extensions.
    pub fn new(
        launched_at: OffsetDateTime,
        last_activity: OffsetDateTime,
        policy: &Policy,
    ) -> Self {
        Self {
            launched_at,
            lease_deadline: initial_lease_deadline(launched_at, policy),
            extensions: Vec::new(),
            last_activity,
        }
    }

    /// The deadlines under `policy`. The lease is clamped to the maximum
    /// here as well, so a ledger written under a more generous policy (or
    /// edited by hand) cannot outlive the current one.
    pub fn deadlines(&self, policy: &Policy) -> Deadlines {
        let max_lease = max_lease_deadline(self.launched_at, policy);
        Deadlines {
            idle: idle_deadline(self.last_activity, policy),
            lease: self.lease_deadline.min(max_lease),
            max_lease,
            hard: hard_deadline(self.launched_at, policy),
        }
    }

    /// Records activity at `at`. The idle clock only moves forward: a late
    /// or out-of-order report never makes the instance look busier than it
    /// was more recently.
    pub fn record_activity(&mut self, at: OffsetDateTime) {
        if at > self.last_activity {
            self.last_activity = at;
        }
    }

    /// Moves `launched_at` earlier to `earlier` (when a more trustworthy
    /// source says so), with the lease deadline by the same amount. A later
    /// time is ignored: only the conservative direction is ever taken.
    pub fn adopt_earlier_launch(&mut self, earlier: OffsetDateTime) -> bool {
        if earlier >= self.launched_at {
            return false;
        }
        let shift = self.launched_at - earlier;
        self.launched_at = earlier;
        self.lease_deadline = self.lease_deadline.saturating_sub(shift);
        true
    }

    /// Extends the lease by `requested` at `at` (see [`extend`]).
    pub fn extend(
        &mut self,
        at: OffsetDateTime,
        requested: Duration,
        policy: &Policy,
    ) -> Result<Grant, ExtendError> {
        let deadlines = self.deadlines(policy);
        let grant = extend(deadlines.lease, deadlines.max_lease, requested)?;
        self.lease_deadline = grant.lease_deadline;
        self.extensions.push(Extension {
            at,
            requested_seconds: requested.as_secs(),
            granted_seconds: grant.granted.as_secs(),
        });
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const LAUNCH: OffsetDateTime = datetime!(2026-12-01 10:00:00 UTC);

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    #[test]
    fn default_policy_is_the_documented_one() {
        let policy = Policy::default();
        assert_eq!(policy.idle_timeout, Duration::from_secs(1800));
        assert_eq!(policy.lease, hours(4));
        assert_eq!(policy.max_lease, hours(8));
        assert_eq!(policy.hard_timeout, hours(8));
        assert!(policy.problems().is_empty());
    }

    #[test]
    fn impossible_policies_name_their_problem() {
        let policy = Policy {
            idle_timeout: Duration::ZERO,
            lease: hours(9),
            max_lease: hours(10),
            hard_timeout: hours(8),
        };
        let problems = policy.problems();
        assert!(problems.contains(&PolicyProblem::Zero {
            key: "idle_timeout"
        }));
        assert!(
            problems
                .iter()
                .any(|p| matches!(p, PolicyProblem::MaxLeaseExceedsHardTimeout { .. }))
        );
        let policy = Policy {
            lease: hours(9),
            ..Policy::default()
        };
        assert!(matches!(
            policy.problems()[..],
            [PolicyProblem::LeaseExceedsMaxLease { .. }]
        ));
    }

    #[test]
    fn extension_past_the_cap_grants_the_remainder_then_refuses() {
        let policy = Policy::default();
        let mut ledger = Ledger::new(LAUNCH, LAUNCH, &policy);
        let grant = ledger.extend(LAUNCH, hours(3), &policy).unwrap();
        assert_eq!(grant.lease_deadline, LAUNCH + time::Duration::hours(7));
        assert!(!grant.capped);
        let grant = ledger.extend(LAUNCH, hours(2), &policy).unwrap();
        assert_eq!(grant.lease_deadline, LAUNCH + time::Duration::hours(8));
        assert_eq!(grant.granted, hours(1));
        assert_eq!(grant.requested, hours(2));
        assert!(grant.capped);
        assert_eq!(
            ledger.extend(LAUNCH, hours(1), &policy),
            Err(ExtendError::AtCap {
                max_lease_deadline: LAUNCH + time::Duration::hours(8)
            })
        );
        assert_eq!(ledger.extensions.len(), 2);
    }

    #[test]
    fn an_earlier_launch_moves_the_lease_with_it_a_later_one_does_not() {
        let policy = Policy::default();
        let mut ledger = Ledger::new(LAUNCH, LAUNCH, &policy);
        assert!(!ledger.adopt_earlier_launch(LAUNCH + time::Duration::hours(1)));
        assert!(ledger.adopt_earlier_launch(LAUNCH - time::Duration::hours(1)));
        assert_eq!(
            ledger.deadlines(&policy).lease,
            LAUNCH + time::Duration::hours(3)
        );
        assert_eq!(
            ledger.deadlines(&policy).hard,
            LAUNCH + time::Duration::hours(7)
        );
    }

    #[test]
    fn shutdown_at_is_the_earliest_deadline_with_its_reason() {
        let t = |h: i64| LAUNCH + time::Duration::hours(h);
        assert_eq!(
            shutdown_at(t(1), t(4), t(8)),
            (t(1), ShutdownReason::IdleTimeout)
        );
        assert_eq!(
            shutdown_at(t(5), t(4), t(8)),
            (t(4), ShutdownReason::LeaseExpired)
        );
        assert_eq!(
            shutdown_at(t(9), t(9), t(8)),
            (t(8), ShutdownReason::HardTimeout)
        );
        assert_eq!(
            shutdown_at(t(8), t(8), t(8)),
            (t(8), ShutdownReason::HardTimeout)
        );
    }

    #[test]
    fn hours_are_validated_before_they_become_seconds() {
        assert_eq!(hours_to_duration(2.0), Ok(hours(2)));
        assert_eq!(hours_to_duration(0.5), Ok(Duration::from_secs(1800)));
        assert_eq!(hours_to_duration(f64::NAN), Err(HoursError::NotFinite));
        assert_eq!(hours_to_duration(f64::INFINITY), Err(HoursError::NotFinite));
        assert_eq!(hours_to_duration(0.0), Err(HoursError::NotPositive));
        assert_eq!(hours_to_duration(-1.0), Err(HoursError::NotPositive));
        assert_eq!(hours_to_duration(1e-9), Err(HoursError::TooSmall));
        assert!(matches!(
            hours_to_duration(1e300),
            Err(HoursError::TooLarge { .. })
        ));
    }

    #[test]
    fn far_future_arithmetic_saturates_instead_of_panicking() {
        let end = add(OffsetDateTime::now_utc(), Duration::from_secs(u64::MAX));
        assert!(end > OffsetDateTime::now_utc());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Extend { after_secs: u32, secs: u32 },
        Activity { after_secs: u32 },
    }

    fn policy_strategy() -> impl Strategy<Value = Policy> {
        (1u64..20_000, 1u64..30_000, 0u64..30_000, 0u64..30_000).prop_map(
            |(idle, lease, more, hard_more)| Policy {
                idle_timeout: Duration::from_secs(idle),
                lease: Duration::from_secs(lease),
                max_lease: Duration::from_secs(lease + more),
                hard_timeout: Duration::from_secs(lease + more + hard_more),
            },
        )
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..5_000, 1u32..40_000)
                .prop_map(|(after_secs, secs)| Op::Extend { after_secs, secs }),
            (0u32..5_000).prop_map(|after_secs| Op::Activity { after_secs }),
        ]
    }

    proptest! {
        #[test]
        fn no_sequence_of_extensions_moves_the_lease_past_max_lease(
            policy in policy_strategy(),
            ops in proptest::collection::vec(op_strategy(), 0..40),
        ) {
            let mut ledger = Ledger::new(LAUNCH, LAUNCH, &policy);
            let cap = add(LAUNCH, policy.max_lease);
            let mut now = LAUNCH;
            for op in ops {
                match op {
                    Op::Extend { after_secs, secs } => {
                        now = add(now, Duration::from_secs(after_secs.into()));
                        let before = ledger.deadlines(&policy).lease;
                        match ledger.extend(now, Duration::from_secs(secs.into()), &policy) {
                            Ok(grant) => {
                                prop_assert!(grant.lease_deadline > before);
                                prop_assert!(grant.granted <= grant.requested);
                            }
                            Err(ExtendError::AtCap { .. }) => prop_assert_eq!(before, cap),
                        }
                    }
                    Op::Activity { after_secs } => {
                        now = add(now, Duration::from_secs(after_secs.into()));
                        ledger.record_activity(now);
                    }
                }
                prop_assert!(ledger.lease_deadline <= cap);
                prop_assert!(ledger.deadlines(&policy).lease <= cap);
            }
        }

        #[test]
        fn nothing_moves_the_hard_deadline(
            policy in policy_strategy(),
            ops in proptest::collection::vec(op_strategy(), 0..40),
        ) {
            let mut ledger = Ledger::new(LAUNCH, LAUNCH, &policy);
            let hard = add(LAUNCH, policy.hard_timeout);
            let mut now = LAUNCH;
            for op in ops {
                match op {
                    Op::Extend { after_secs, secs } => {
                        now = add(now, Duration::from_secs(after_secs.into()));
                        let _ = ledger.extend(now, Duration::from_secs(secs.into()), &policy);
                    }
                    Op::Activity { after_secs } => {
                        now = add(now, Duration::from_secs(after_secs.into()));
                        ledger.record_activity(now);
                    }
                }
                let deadlines = ledger.deadlines(&policy);
                prop_assert_eq!(deadlines.hard, hard);
                prop_assert!(deadlines.shutdown().0 <= hard);
            }
        }

        #[test]
        fn activity_never_extends_the_lease(
            policy in policy_strategy(),
            activity in proptest::collection::vec(0u32..100_000, 0..40),
        ) {
            let mut ledger = Ledger::new(LAUNCH, LAUNCH, &policy);
            let lease = ledger.deadlines(&policy).lease;
            for after in activity {
                ledger.record_activity(add(LAUNCH, Duration::from_secs(after.into())));
                prop_assert_eq!(ledger.deadlines(&policy).lease, lease);
                prop_assert!(ledger.deadlines(&policy).shutdown().0 <= lease);
            }
        }
    }
}

//! The policy core: every cost-control decision the daemon makes, with no
//! I/O at all (the shape of ntpd-rs's `ntp-proto`).
//!
//! The shell feeds it the time and what it observed ([`Core::on_tick`],
//! [`Core::extend`], ...) and executes the [`Action`]s it returns: persist
//! the state, start terminating, push a heartbeat, ping the systemd
//! watchdog. Because it never reads a clock, its tests drive it with an
//! injected one and cover hours of policy in microseconds.

use std::time::Duration;

use soong_protocol::api::{DaemonState, StatusResponse};
use soong_protocol::heartbeat::Heartbeat;
use soong_protocol::lease::{self, Deadlines, ExtendError, Grant};
use soong_protocol::{Policy, ShutdownReason};
use time::OffsetDateTime;

use crate::state::{PersistedState, Terminating};

/// The longest the enforcement loop sleeps, whatever the deadlines say: it
/// bounds the damage of a wall clock that jumps, and paces the watchdog.
pub const MAX_TICK: Duration = Duration::from_secs(1);

/// What an activity sample saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    /// What counted as activity since the previous sample, if anything did.
    pub activity: Option<String>,
    /// Open TCP connections to the activity ports.
    pub active_connections: usize,
}

/// What the shell observed since the last tick.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// A fresh activity sample, if one arrived.
    pub sample: Option<Sample>,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write [`Core::snapshot`] to `state.json` (before anything that follows).
    Persist,
    /// Start the termination sequence (once per process).
    Terminate {
        /// Why.
        reason: ShutdownReason,
        /// Whether this continues a termination begun before a restart
        /// (then `pre_terminate` is not run again).
        resumed: bool,
    },
    /// Push [`Core::heartbeat`] to the worker.
    SendHeartbeat,
    /// Tell systemd the loop is alive.
    NotifyWatchdog,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The instance is being terminated; nothing can stop that.
    Terminating,
    /// The lease is at `max_lease`.
    AtCap {
        /// Where the lease ends.
        max_lease_deadline: OffsetDateTime,
    },
}

/// The instance being guarded, once known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Lambda's instance id.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// Its price, if the API told us.
    pub price_cents_per_hour: Option<u64>,
}

/// Settings the core needs.
#[derive(Debug, Clone, Copy)]
pub struct CoreConfig {
    /// The four durations.
    pub policy: Policy,
    /// How often to heartbeat, when a worker is configured.
    pub heartbeat_interval: Option<Duration>,
}

impl CoreConfig {
    /// How often a change of `last_activity` alone is written to disk. A
    /// busy instance would otherwise fsync every sample; losing up to this
    /// much on a crash only brings the idle deadline closer.
    fn activity_persist_interval(&self) -> Duration {
        (self.policy.idle_timeout / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

/// Progress of the termination, for `/status`, metrics and the heartbeat.
#[derive(Debug, Clone, Default)]
struct TerminateProgress {
    attempts: u32,
    last_error: Option<String>,
}

/// The policy state machine.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    state: PersistedState,
    price_cents_per_hour: Option<u64>,
    active_connections: usize,
    last_heartbeat: Option<OffsetDateTime>,
    terminate_dispatched: bool,
    resumed_terminating: bool,
    generation: u64,
    dirty: bool,
    activity_dirty: bool,
    last_persist: Option<OffsetDateTime>,
    progress: TerminateProgress,
}

impl Core {
    /// A core starting from `state` (fresh or restored).
    pub fn new(config: CoreConfig, state: PersistedState) -> Self {
        let resumed_terminating = state.terminating.is_some();
        Self {
            config,
            state,
            price_cents_per_hour: None,
            active_connections: 0,
            last_heartbeat: None,
            terminate_dispatched: false,
            resumed_terminating,
            generation: 1,
            // The start-up state is written at once: a fallback derived now
            // must be what the next start sees too.
            dirty: true,
            activity_dirty: false,
            last_persist: None,
            progress: TerminateProgress::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }

    /// All deadlines now.
    pub fn deadlines(&self) -> Deadlines {
        self.state.ledger.deadlines(&self.config.policy)
    }

    /// `shutdown_at` and its reason; while terminating, when and why it began.
    pub fn shutdown(&self) -> (OffsetDateTime, ShutdownReason) {
        match &self.state.terminating {
            Some(t) => (t.since, t.reason),
            None => self.deadlines().shutdown(),
        }
    }

    /// Whether termination has begun.
    pub fn is_terminating(&self) -> bool {
        self.state.terminating.is_some()
    }

    /// Whether Lambda confirmed the termination.
    pub fn is_confirmed(&self) -> bool {
        self.state
            .terminating
            .as_ref()
            .is_some_and(|t| t.confirmed_at.is_some())
    }

    /// The persisted part of the state, with its generation.
    pub fn snapshot(&self) -> (u64, PersistedState) {
        (self.generation, self.state.clone())
    }

    /// The persisted part of the state, for a writer that is about to save
    /// it: marks it clean.
    pub fn take_snapshot(&mut self, now: OffsetDateTime) -> (u64, PersistedState) {
        self.dirty = false;
        self.activity_dirty = false;
        self.last_persist = Some(now);
        self.snapshot()
    }

    /// Writing the snapshot failed: try again at the next tick.
    pub fn persist_failed(&mut self) {
        self.dirty = true;
    }

    fn changed(&mut self) {
        self.generation += 1;
        self.dirty = true;
    }

    /// One turn of the enforcement loop.
    pub fn on_tick(&mut self, now: OffsetDateTime, inputs: Inputs) -> Vec<Action> {
        if let Some(sample) = inputs.sample {
            self.active_connections = sample.active_connections;
            if let Some(source) = sample.activity {
                self.note_activity(now, source);
            }
        }
        self.check_deadlines(now);

        let mut actions = Vec::new();
        let terminate = self.state.terminating.as_ref().and_then(|t| {
            (!self.terminate_dispatched && t.confirmed_at.is_none()).then_some(t.reason)
        });
        let activity_due = self.activity_dirty
            && self.last_persist.is_none_or(|last| {
                now >= lease::add(last, self.config.activity_persist_interval())
            });
        // Persist precedes Terminate: a crash right after the trigger must
        // come back terminating.
        if self.dirty || activity_due || terminate.is_some() {
            actions.push(Action::Persist);
        }
        if let Some(reason) = terminate {
            self.terminate_dispatched = true;
            actions.push(Action::Terminate {
                reason,
                resumed: self.resumed_terminating,
            });
        }
        if let Some(interval) = self.config.heartbeat_interval
            && self
                .last_heartbeat
                .is_none_or(|last| now >= lease::add(last, interval))
        {
            self.last_heartbeat = Some(now);
            actions.push(Action::SendHeartbeat);
        }
        actions.push(Action::NotifyWatchdog);
        actions
    }

    /// When the loop must run next, at the latest.
    pub fn next_wakeup(&self, now: OffsetDateTime) -> OffsetDateTime {
        let mut next = lease::add(now, MAX_TICK);
        if !self.is_terminating() {
            next = next.min(self.deadlines().shutdown().0);
        }
        if let (Some(interval), Some(last)) = (self.config.heartbeat_interval, self.last_heartbeat)
        {
            next = next.min(lease::add(last, interval));
        }
        next.max(now)
    }

    /// Starts terminating if a deadline has passed.
    fn check_deadlines(&mut self, now: OffsetDateTime) {
        if self.state.terminating.is_none() {
            let (at, reason) = self.deadlines().shutdown();
            if now >= at {
                self.begin_terminating(now, reason, None);
            }
        }
    }

    fn begin_terminating(
        &mut self,
        now: OffsetDateTime,
        reason: ShutdownReason,
        detail: Option<String>,
    ) {
        self.state.terminating = Some(Terminating {
            reason,
            since: now,
            detail,
            confirmed_at: None,
        });
        self.changed();
    }

    fn note_activity(&mut self, now: OffsetDateTime, source: String) {
        let before = self.state.ledger.last_activity;
        self.state.ledger.record_activity(now);
        if self.state.ledger.last_activity != before {
            self.state.last_activity_source = Some(source);
            self.generation += 1;
            self.activity_dirty = true;
        }
    }

    /// `POST /activity`: the idle clock restarts now.
    pub fn record_activity(
        &mut self,
        now: OffsetDateTime,
        source: &str,
    ) -> Result<OffsetDateTime, Refusal> {
        self.check_deadlines(now);
        if self.is_terminating() {
            return Err(Refusal::Terminating);
        }
        self.note_activity(now, source.to_owned());
        Ok(self.state.ledger.last_activity)
    }

    /// `POST /extend`: extends the lease by `requested`, up to `max_lease`.
    pub fn extend(&mut self, now: OffsetDateTime, requested: Duration) -> Result<Grant, Refusal> {
        self.check_deadlines(now);
        if self.is_terminating() {
            return Err(Refusal::Terminating);
        }
        match self
            .state
            .ledger
            .extend(now, requested, &self.config.policy)
        {
            Ok(grant) => {
                self.changed();
                Ok(grant)
            }
            Err(ExtendError::AtCap { max_lease_deadline }) => {
                Err(Refusal::AtCap { max_lease_deadline })
            }
        }
    }

    /// `POST /shutdown`: terminate now. Asking twice changes nothing.
    pub fn request_shutdown(&mut self, now: OffsetDateTime, detail: Option<String>) {
        if !self.is_terminating() {
            self.begin_terminating(now, ShutdownReason::ShutdownRequested, detail);
        }
    }

    /// The instance was identified. A `soong:launched-at` tag earlier than
    /// what we hold is adopted: earlier is always the safe direction.
    pub fn set_identity(&mut self, identity: &Identity, tagged_launch: Option<OffsetDateTime>) {
        if self.state.instance_id.as_deref() != Some(identity.id.as_str()) {
            self.state.instance_id = Some(identity.id.clone());
            self.changed();
        }
        if self.state.instance_name.is_none() && identity.name.is_some() {
            self.state.instance_name.clone_from(&identity.name);
            self.changed();
        }
        if let Some(tagged) = tagged_launch
            && self.state.ledger.adopt_earlier_launch(tagged)
        {
            self.changed();
        }
        self.price_cents_per_hour = identity.price_cents_per_hour.or(self.price_cents_per_hour);
    }

    /// The instance id, once known.
    pub fn instance_id(&self) -> Option<&str> {
        self.state.instance_id.as_deref()
    }

    /// A terminate call is about to be made.
    pub fn terminate_attempted(&mut self) {
        self.progress.attempts = self.progress.attempts.saturating_add(1);
    }

    /// A terminate call failed.
    pub fn terminate_failed(&mut self, error: String) {
        self.progress.last_error = Some(error);
    }

    /// Lambda confirmed the termination (or said the instance is gone).
    pub fn terminate_confirmed(&mut self, now: OffsetDateTime) {
        if let Some(t) = &mut self.state.terminating
            && t.confirmed_at.is_none()
        {
            t.confirmed_at = Some(now);
            self.progress.last_error = None;
            self.changed();
        }
    }

    /// Terminate calls made by this process.
    pub fn terminate_attempts(&self) -> u32 {
        self.progress.attempts
    }

    /// `GET /status`.
    pub fn status(&self, now: OffsetDateTime) -> StatusResponse {
        let deadlines = self.deadlines();
        let (shutdown_at, shutdown_reason) = self.shutdown();
        let ledger = &self.state.ledger;
        let terminating = self.state.terminating.as_ref();
        StatusResponse {
            instance_id: self.state.instance_id.clone(),
            instance_name: self.state.instance_name.clone(),
            state: self.daemon_state(),
            terminate_reason: terminating.map(|t| t.reason),
            terminate_detail: terminating.and_then(|t| t.detail.clone()),
            terminating_since: terminating.map(|t| t.since),
            terminate_attempts: self.progress.attempts,
            terminate_confirmed: self.is_confirmed(),
            terminate_error: self.progress.last_error.clone(),
            launched_at: ledger.launched_at,
            uptime_seconds: lease::between(ledger.launched_at, now).as_secs(),
            shutdown_at,
            shutdown_reason,
            idle_deadline: Some(deadlines.idle),
            lease_deadline: deadlines.lease,
            max_lease_deadline: deadlines.max_lease,
            hard_deadline: deadlines.hard,
            idle_timeout_seconds: self.config.policy.idle_timeout.as_secs(),
            idle_seconds: lease::between(ledger.last_activity, now).as_secs(),
            last_activity: ledger.last_activity,
            last_activity_source: self.state.last_activity_source.clone(),
            active_connections: self.active_connections,
            extensions: ledger.extensions.clone(),
            price_cents_per_hour: self.price_cents_per_hour,
        }
    }

    fn daemon_state(&self) -> DaemonState {
        if self.is_terminating() {
            DaemonState::Terminating
        } else {
            DaemonState::Running
        }
    }

    /// The heartbeat body, once the instance's id and name are known (the
    /// worker's token is derived from the name).
    pub fn heartbeat(&self, now: OffsetDateTime) -> Option<Heartbeat> {
        let (shutdown_at, shutdown_reason) = self.shutdown();
        Some(Heartbeat {
            instance_id: self.state.instance_id.clone()?,
            instance_name: self.state.instance_name.clone()?,
            sent_at: now,
            state: self.daemon_state(),
            shutdown_at,
            shutdown_reason,
            terminate_error: self.progress.last_error.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::STATE_VERSION;
    use soong_protocol::Ledger;
    use time::macros::datetime;

    const LAUNCH: OffsetDateTime = datetime!(2026-12-01 10:00:00 UTC);

    /// An injected clock: seconds after launch.
    fn at(secs: i64) -> OffsetDateTime {
        LAUNCH + time::Duration::seconds(secs)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn core(policy: Policy, heartbeat: Option<Duration>) -> Core {
        let state = PersistedState {
            version: STATE_VERSION,
            instance_id: Some("i-1".into()),
            instance_name: Some("soong-a".into()),
            ledger: Ledger::new(LAUNCH, LAUNCH, &policy),
            last_activity_source: None,
            terminating: None,
        };
        Core::new(
            CoreConfig {
                policy,
                heartbeat_interval: heartbeat,
            },
            state,
        )
    }

    fn policy(idle: u64, lease: u64, max_lease: u64, hard: u64) -> Policy {
        Policy {
            idle_timeout: secs(idle),
            lease: secs(lease),
            max_lease: secs(max_lease),
            hard_timeout: secs(hard),
        }
    }

    fn terminations(actions: &[Action]) -> Vec<ShutdownReason> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Terminate { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn busy() -> Inputs {
        Inputs {
            sample: Some(Sample {
                activity: Some("connection:8000".into()),
                active_connections: 1,
            }),
        }
    }

    #[test]
    fn the_first_tick_persists_the_startup_state() {
        let mut core = core(Policy::default(), None);
        assert_eq!(
            core.on_tick(at(0), Inputs::default()),
            [Action::Persist, Action::NotifyWatchdog]
        );
        let _ = core.take_snapshot(at(0));
        assert_eq!(
            core.on_tick(at(1), Inputs::default()),
            [Action::NotifyWatchdog]
        );
    }

    #[test]
    fn lease_expiry_terminates_once_after_persisting() {
        let mut core = core(policy(100, 10, 20, 30), None);
        let _ = core.take_snapshot(at(0));
        for t in 0..10 {
            assert!(terminations(&core.on_tick(at(t), busy())).is_empty());
        }
        let actions = core.on_tick(at(10), busy());
        assert_eq!(
            actions[..2],
            [
                Action::Persist,
                Action::Terminate {
                    reason: ShutdownReason::LeaseExpired,
                    resumed: false
                }
            ]
        );
        for t in 11..100 {
            assert!(
                terminations(&core.on_tick(at(t), busy())).is_empty(),
                "only once"
            );
        }
        assert!(core.is_terminating());
    }

    #[test]
    fn idle_timeout_counts_from_the_last_activity() {
        let mut core = core(policy(5, 100, 100, 100), None);
        core.on_tick(at(3), busy());
        assert!(terminations(&core.on_tick(at(7), Inputs::default())).is_empty());
        assert_eq!(
            terminations(&core.on_tick(at(8), Inputs::default())),
            [ShutdownReason::IdleTimeout]
        );
    }

    #[test]
    fn activity_never_extends_the_lease_or_the_hard_deadline() {
        let mut core = core(policy(5, 10, 20, 30), None);
        for t in 0..10 {
            core.on_tick(at(t), busy());
        }
        assert_eq!(
            terminations(&core.on_tick(at(10), busy())),
            [ShutdownReason::LeaseExpired]
        );
    }

    #[test]
    fn the_hard_deadline_holds_whatever_is_extended() {
        let mut core = core(policy(1000, 10, 30, 30), None);
        assert!(core.extend(at(1), secs(100)).is_ok());
        assert_eq!(
            core.extend(at(2), secs(1)),
            Err(Refusal::AtCap {
                max_lease_deadline: at(30)
            })
        );
        for t in 0..30 {
            assert!(terminations(&core.on_tick(at(t), busy())).is_empty());
        }
        assert_eq!(
            terminations(&core.on_tick(at(30), busy())),
            [ShutdownReason::HardTimeout]
        );
    }

    #[test]
    fn an_extension_is_persisted_at_once_and_reported() {
        let mut core = core(policy(1000, 10, 30, 30), None);
        let _ = core.take_snapshot(at(0));
        let grant = core.extend(at(1), secs(5)).unwrap();
        assert_eq!(grant.lease_deadline, at(15));
        assert!(!grant.capped);
        assert_eq!(core.on_tick(at(1), Inputs::default())[0], Action::Persist);
        assert_eq!(core.status(at(1)).extensions.len(), 1);
    }

    #[test]
    fn nothing_is_accepted_once_terminating() {
        let mut core = core(policy(1000, 10, 30, 30), None);
        core.request_shutdown(at(1), Some("done".into()));
        assert_eq!(core.extend(at(2), secs(5)), Err(Refusal::Terminating));
        assert_eq!(
            core.record_activity(at(2), "api"),
            Err(Refusal::Terminating)
        );
        assert_eq!(
            terminations(&core.on_tick(at(2), Inputs::default())),
            [ShutdownReason::ShutdownRequested]
        );
        let status = core.status(at(3));
        assert_eq!(status.state, DaemonState::Terminating);
        assert_eq!(status.terminate_detail.as_deref(), Some("done"));
        assert_eq!(status.shutdown_at, at(1));
    }

    #[test]
    fn an_extension_after_the_deadline_is_refused_not_granted() {
        // The loop may not have ticked yet; the request must not revive it.
        let mut core = core(policy(1000, 10, 30, 30), None);
        assert_eq!(core.extend(at(11), secs(5)), Err(Refusal::Terminating));
    }

    #[test]
    fn a_restored_termination_resumes_without_pre_terminate_and_stops_once_confirmed() {
        let mut c = core(Policy::default(), None);
        c.request_shutdown(at(0), None);
        let (_, state) = c.snapshot();
        let mut restarted = Core::new(c.config, state);
        let actions = restarted.on_tick(at(5), Inputs::default());
        assert!(actions.contains(&Action::Terminate {
            reason: ShutdownReason::ShutdownRequested,
            resumed: true
        }));
        restarted.terminate_confirmed(at(6));
        let (_, state) = restarted.snapshot();
        let mut again = Core::new(c.config, state);
        assert!(terminations(&again.on_tick(at(7), Inputs::default())).is_empty());
    }

    #[test]
    fn heartbeats_are_due_every_interval_whatever_the_idle_state() {
        let mut core = core(policy(5, 100, 100, 100), Some(secs(10)));
        let count = |core: &mut Core, t| {
            core.on_tick(at(t), Inputs::default())
                .contains(&Action::SendHeartbeat)
        };
        assert!(count(&mut core, 0));
        assert!(!count(&mut core, 9));
        assert!(count(&mut core, 10), "idle or not");
        assert!(count(&mut core, 20), "terminating or not");
        assert_eq!(core.next_wakeup(at(20)), at(21));
    }

    #[test]
    fn the_loop_wakes_at_the_next_deadline_or_within_a_second() {
        let mut core = core(policy(100, 10, 20, 30), None);
        assert_eq!(core.next_wakeup(at(0)), at(1));
        let half = at(9) + time::Duration::milliseconds(500);
        assert_eq!(core.next_wakeup(at(9)), at(10));
        assert_eq!(core.next_wakeup(half), at(10));
        core.on_tick(at(10), Inputs::default());
        assert_eq!(
            core.next_wakeup(at(10)),
            at(11),
            "terminating: only the watchdog"
        );
    }

    #[test]
    fn activity_alone_is_persisted_at_a_bounded_rate() {
        let mut core = core(policy(100, 1000, 1000, 1000), None);
        let _ = core.take_snapshot(at(0));
        // idle 100 s -> at most every 10 s.
        let persisted = |core: &mut Core, t| {
            let actions = core.on_tick(at(t), busy());
            let yes = actions.contains(&Action::Persist);
            if yes {
                let _ = core.take_snapshot(at(t));
            }
            yes
        };
        assert!(!persisted(&mut core, 1));
        assert!(!persisted(&mut core, 9));
        assert!(persisted(&mut core, 10));
        assert!(!persisted(&mut core, 11));
    }

    #[test]
    fn an_earlier_tagged_launch_time_is_adopted_a_later_one_is_not() {
        let mut core = core(policy(100, 10, 20, 30), None);
        let identity = Identity {
            id: "i-1".into(),
            name: None,
            price_cents_per_hour: Some(129),
        };
        core.set_identity(&identity, Some(at(5)));
        assert_eq!(core.deadlines().lease, at(10));
        core.set_identity(&identity, Some(at(-5)));
        assert_eq!(core.deadlines().lease, at(5));
        assert_eq!(core.deadlines().hard, at(25));
        assert_eq!(core.status(at(0)).price_cents_per_hour, Some(129));
    }

    #[test]
    fn the_heartbeat_carries_the_terminate_error() {
        let mut core = core(Policy::default(), Some(secs(60)));
        core.request_shutdown(at(0), None);
        core.terminate_attempted();
        core.terminate_failed("Lambda API error 500".into());
        let heartbeat = core.heartbeat(at(1)).unwrap();
        assert_eq!(heartbeat.state, DaemonState::Terminating);
        assert_eq!(heartbeat.shutdown_reason, ShutdownReason::ShutdownRequested);
        assert_eq!(
            heartbeat.terminate_error.as_deref(),
            Some("Lambda API error 500")
        );
        core.terminate_confirmed(at(2));
        assert_eq!(core.heartbeat(at(3)).unwrap().terminate_error, None);
    }
}

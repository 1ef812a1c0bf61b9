//! The daemon's memory across restarts: `<state_dir>/state.json`.
//!
//! A restart, a crash or a reboot must never grant a fresh lease or reset
//! the idle clock (DESIGN.md §2, Persistence). So the file is written
//! atomically (temp file, fsync, rename, fsync of the directory), and a
//! missing or unreadable file falls back to the most conservative values we
//! can derive, never to "now": see [`resolve_startup`].

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use soong_protocol::config::InstanceConfig;
use soong_protocol::{Ledger, Policy, ShutdownReason};
use time::OffsetDateTime;

/// The file name inside `state_dir`.
pub const STATE_FILE: &str = "state.json";
/// The format version this daemon writes and reads.
pub const STATE_VERSION: u32 = 1;

/// Everything that must survive a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// The instance id, once known (so a restart need not resolve it again).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The instance name, once known.
    #[serde(default)]
    pub instance_name: Option<String>,
    /// Launch time, lease, extensions and last activity.
    #[serde(flatten)]
    pub ledger: Ledger,
    /// What the last activity was.
    #[serde(default)]
    pub last_activity_source: Option<String>,
    /// Set once termination begins; never cleared.
    #[serde(default)]
    pub terminating: Option<Terminating>,
}

/// A termination in progress (or done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminating {
    /// Which layer triggered it.
    pub reason: ShutdownReason,
    /// When it was triggered.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// The free text given to `POST /shutdown`.
    #[serde(default)]
    pub detail: Option<String>,
    /// When Lambda confirmed it; after that no more terminate calls are made.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub confirmed_at: Option<OffsetDateTime>,
}

/// What was found on disk at start-up.
#[derive(Debug)]
pub enum Loaded {
    /// No state file: a first start, or a lost file.
    Missing,
    /// A state file that cannot be trusted, and why.
    Corrupt(String),
    /// A readable state file.
    Found(PersistedState),
}

/// Why the state could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Creating the state directory failed.
    #[error("cannot create the state directory `{}`", .dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or renaming the file failed.
    #[error("cannot write the state file `{}`", .file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Reads and writes `state.json`. Writes are serialised, and a write never
/// replaces newer state with older: each snapshot carries a generation.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    written: Mutex<u64>,
}

impl StateStore {
    /// Opens (creating with mode 0700 if needed) the state directory.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            written: Mutex::new(0),
        })
    }

    /// `<state_dir>/state.json`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Reads the state file.
    pub fn load(&self) -> Loaded {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
            Err(err) => return Loaded::Corrupt(format!("cannot read it: {err}")),
        };
        match serde_json::from_str::<PersistedState>(&text) {
            Ok(state) if state.version == STATE_VERSION => Loaded::Found(state),
            Ok(state) => Loaded::Corrupt(format!(
                "it has format version {}, this daemon reads {STATE_VERSION}",
                state.version
            )),
            Err(err) => Loaded::Corrupt(format!("it is not valid state: {err}")),
        }
    }

    /// Moves an untrustworthy state file aside, so it can be looked at
    /// later and is not read again.
    pub fn quarantine(&self, now: OffsetDateTime) {
        let from = self.path();
        let to = self
            .dir
            .join(format!("{STATE_FILE}.corrupt-{}", now.unix_timestamp()));
        if let Err(err) = fs::rename(&from, &to) {
            log::warn!("could not move the unreadable state file aside: {err}");
        }
    }

    /// Writes `state` atomically, unless a newer generation was already
    /// written. Returns whether it wrote.
    pub fn save(&self, generation: u64, state: &PersistedState) -> Result<bool, StateError> {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if generation != 0 && generation <= *written {
            return Ok(false);
        }
        let file = self.path();
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let fail = |source| StateError::Write {
            file: file.clone(),
            source,
        };
        let mut text = serde_json::to_vec_pretty(state).map_err(|err| fail(err.into()))?;
        text.push(b'\n');
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        out.write_all(&text).map_err(fail)?;
        out.sync_all().map_err(fail)?;
        drop(out);
        fs::rename(&tmp, &file).map_err(fail)?;
        // The rename is only durable once the directory entry is.
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(fail)?;
        *written = generation.max(*written);
        Ok(true)
    }
}

/// The system's boot time, from `btime` in `/proc/stat`.
pub fn boot_time() -> Option<OffsetDateTime> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    parse_btime(&stat)
}

fn parse_btime(stat: &str) -> Option<OffsetDateTime> {
    let secs = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse::<i64>()
        .ok()?;
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

/// How the start-up state came about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Read back from the state file.
    Restored,
    /// No state file; derived from the config and the boot time.
    Fresh,
    /// The state file was unusable (the reason); derived conservatively.
    Recovered(String),
}

/// Decides the state to start from.
///
/// With a readable file that belongs to this instance, its values win,
/// except that an earlier configured `launched_at` is adopted (earlier is
/// the safe direction). Without one, `launched_at` is the configured one,
/// else the boot time; `last_activity` is the later of the two, which is at
/// or before the daemon's first start. Neither is ever `now`, so losing the
/// file can only bring termination closer. If even the boot time is unknown,
/// the instance is treated as launched a whole `hard_timeout` ago: it is
/// terminated at once rather than guarded by numbers made up on the spot.
pub fn resolve_startup(
    instance: &InstanceConfig,
    policy: &Policy,
    loaded: Loaded,
    boot_time: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> (PersistedState, Origin) {
    let problem = match loaded {
        Loaded::Found(state) => match foreign(instance, &state) {
            None => return (restore(instance, state, now), Origin::Restored),
            Some(problem) => Some(problem),
        },
        Loaded::Corrupt(problem) => Some(problem),
        Loaded::Missing => None,
    };
    let launched_at = instance
        .launched_at
        .or(boot_time)
        .unwrap_or_else(|| now - time::Duration::seconds_f64(policy.hard_timeout.as_secs_f64()))
        .min(now);
    let last_activity = boot_time
        .map_or(launched_at, |boot| boot.max(launched_at))
        .min(now);
    let state = PersistedState {
        version: STATE_VERSION,
        instance_id: instance.id.clone(),
        instance_name: instance.name.clone(),
        ledger: Ledger::new(launched_at, last_activity, policy),
        last_activity_source: None,
        terminating: None,
    };
    let origin = problem.map_or(Origin::Fresh, Origin::Recovered);
    (state, origin)
}

/// Why a readable state file is not this instance's, if it is not.
fn foreign(instance: &InstanceConfig, state: &PersistedState) -> Option<String> {
    let differs = |configured: &Option<String>, stored: &Option<String>| matches!((configured, stored), (Some(a), Some(b)) if a != b);
    if differs(&instance.id, &state.instance_id) || differs(&instance.name, &state.instance_name) {
        return Some("it belongs to another instance".to_owned());
    }
    None
}

fn restore(
    instance: &InstanceConfig,
    mut state: PersistedState,
    now: OffsetDateTime,
) -> PersistedState {
    if let Some(configured) = instance.launched_at {
        state.ledger.adopt_earlier_launch(configured);
    }
    // A last_activity in the future (a clock that jumped back) would hold
    // off the idle timeout; the present is the latest it can honestly be.
    state.ledger.last_activity = state.ledger.last_activity.min(now);
    if state.instance_id.is_none() {
        state.instance_id.clone_from(&instance.id);
    }
    if state.instance_name.is_none() {
        state.instance_name.clone_from(&instance.name);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00:00 UTC);
    const LAUNCH: OffsetDateTime = datetime!(2026-12-01 10:00:00 UTC);
    const BOOT: OffsetDateTime = datetime!(2026-12-01 10:02:00 UTC);

    fn instance(launched_at: Option<OffsetDateTime>) -> InstanceConfig {
        InstanceConfig {
            id: Some("i-1".into()),
            name: Some("soong-a".into()),
            launched_at,
        }
    }

    fn stored() -> PersistedState {
        let policy = Policy::default();
        let mut ledger = Ledger::new(LAUNCH, datetime!(2026-12-01 11:00:00 UTC), &policy);
        ledger
            .extend(NOW, std::time::Duration::from_secs(3600), &policy)
            .unwrap();
        PersistedState {
            version: STATE_VERSION,
            instance_id: Some("i-1".into()),
            instance_name: Some("soong-a".into()),
            ledger,
            last_activity_source: Some("api".into()),
            terminating: None,
        }
    }

    #[test]
    fn a_missing_state_file_falls_back_to_config_then_boot_time_never_now() {
        let policy = Policy::default();
        let (state, origin) = resolve_startup(
            &instance(Some(LAUNCH)),
            &policy,
            Loaded::Missing,
            Some(BOOT),
            NOW,
        );
        assert_eq!(origin, Origin::Fresh);
        assert_eq!(state.ledger.launched_at, LAUNCH);
        assert_eq!(state.ledger.last_activity, BOOT);

        let (state, _) =
            resolve_startup(&instance(None), &policy, Loaded::Missing, Some(BOOT), NOW);
        assert_eq!(state.ledger.launched_at, BOOT);
        assert_eq!(state.ledger.last_activity, BOOT);

        let (state, _) = resolve_startup(&instance(None), &policy, Loaded::Missing, None, NOW);
        assert!(state.ledger.deadlines(&policy).hard <= NOW);
    }

    #[test]
    fn a_corrupt_state_file_is_recovered_conservatively() {
        let (state, origin) = resolve_startup(
            &instance(Some(LAUNCH)),
            &Policy::default(),
            Loaded::Corrupt("garbage".into()),
            Some(BOOT),
            NOW,
        );
        assert_eq!(origin, Origin::Recovered("garbage".into()));
        assert_eq!(state.ledger.launched_at, LAUNCH);
        assert!(state.ledger.last_activity < NOW);
    }

    #[test]
    fn a_restored_state_keeps_its_deadlines_and_activity() {
        let (state, origin) = resolve_startup(
            &instance(Some(LAUNCH)),
            &Policy::default(),
            Loaded::Found(stored()),
            Some(BOOT),
            NOW,
        );
        assert_eq!(origin, Origin::Restored);
        assert_eq!(state, stored());
    }

    #[test]
    fn an_earlier_configured_launch_time_wins_over_the_stored_one() {
        let earlier = datetime!(2026-12-01 09:00:00 UTC);
        let (state, _) = resolve_startup(
            &instance(Some(earlier)),
            &Policy::default(),
            Loaded::Found(stored()),
            Some(BOOT),
            NOW,
        );
        assert_eq!(state.ledger.launched_at, earlier);
    }

    #[test]
    fn another_instances_state_is_not_trusted() {
        let mut other = stored();
        other.instance_id = Some("i-2".into());
        let (state, origin) = resolve_startup(
            &instance(Some(LAUNCH)),
            &Policy::default(),
            Loaded::Found(other),
            Some(BOOT),
            NOW,
        );
        assert!(matches!(origin, Origin::Recovered(_)));
        assert!(state.ledger.extensions.is_empty());
    }

    #[test]
    fn state_round_trips_through_the_file_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state")).unwrap();
        assert!(matches!(store.load(), Loaded::Missing));
        assert!(store.save(1, &stored()).unwrap());
        assert!(
            !store.save(1, &stored()).unwrap(),
            "an old generation is not rewritten"
        );
        match store.load() {
            Loaded::Found(state) => assert_eq!(state, stored()),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join("state/state.json.tmp").exists());
        fs::write(store.path(), "{not json").unwrap();
        assert!(matches!(store.load(), Loaded::Corrupt(_)));
    }

    #[test]
    fn boot_time_is_read_from_proc_stat() {
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1764583200\nprocesses 7\n"),
            Some(datetime!(2025-12-01 10:00:00 UTC))
        );
        assert_eq!(parse_btime("cpu 1\n"), None);
        assert!(boot_time().is_some());
    }
}

//! Interactive terminals: which pseudo-terminals (`/dev/pts/N`) had input or
//! output recently, read from the device's timestamps.
//!
//! The kernel sets a tty's atime when a process reads from it (the user's
//! input reaching the shell) and its mtime when a process writes to it
//! (output). To keep keystroke timing from leaking to other users, it only
//! updates them when the new time falls in a different 8-second block
//! (`tty_update_time`: `(now ^ stamp) & ~7`), so the last real event can be
//! up to 8 s later than the stamp shows. A terminal therefore counts while
//! the end of its stamp's 8 s block is within the window: it counts for at
//! least `window` and at most `window` + 8 s after its last input or output
//! (so with the default 2 s sample interval, up to 10 s), and typing that
//! never stops is never seen as idle.
//!
//! An open, untouched session has no new stamps, so it stops counting after
//! that; an `ssh -N` tunnel has no pty at all. A newly allocated pty is
//! stamped at creation, so logging in counts. Anything that reads or writes a
//! pty counts, including `watch`, `top` or a training loop printing progress
//! inside a forgotten tmux session: the lease and hard timeout bound those.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::ActivityError;

/// Where ptys live on Linux (devpts).
pub const PTS_DIR: &str = "/dev/pts";

/// The tty timestamp granularity of `tty_update_time`.
const STAMP_BLOCK_SECS: i64 = 8;

/// Every pty under [`PTS_DIR`] with input or output within `window` of `now`
/// (widened by the timestamp granularity described in the module docs), as
/// `pts/N`, in directory order.
pub fn active_terminals(now: SystemTime, window: Duration) -> Result<Vec<String>, ActivityError> {
    let mut found = Vec::new();
    scan(Path::new(PTS_DIR), now, window, &mut found)?;
    Ok(found)
}

/// Appends the active ptys in `dir` to `found`.
pub(super) fn scan(
    dir: &Path,
    now: SystemTime,
    window: Duration,
    found: &mut Vec<String>,
) -> Result<(), ActivityError> {
    let read_error = |source| ActivityError::ReadTerminals {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // No devpts mounted: there are no ptys, so no terminal activity.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(read_error(error)),
    };
    let now_secs = unix_seconds(now);
    let window_secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    for entry in entries {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name();
        // Only the numbered slaves are terminals; `ptmx` is the multiplexer.
        let Some(name) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            // The session ended between listing and stat.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(read_error(error)),
        };
        if !metadata.file_type().is_char_device() {
            continue;
        }
        let stamp = metadata.atime().max(metadata.mtime());
        if touched_within(stamp, now_secs, window_secs) {
            found.push(format!("pts/{name}"));
        }
    }
    Ok(())
}

/// Whether an event stamped `stamp` (whole seconds) may have happened within
/// `window_secs` before `now_secs`: later events in the same 8 s block leave
/// the stamp unchanged, so the block's end is the latest it could have been.
fn touched_within(stamp: i64, now_secs: i64, window_secs: i64) -> bool {
    let block_end = (stamp & !(STAMP_BLOCK_SECS - 1)).saturating_add(STAMP_BLOCK_SECS);
    block_end > now_secs.saturating_sub(window_secs)
}

/// Seconds since the epoch, rounded down; before the epoch counts as 0.
fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_counts_until_the_end_of_its_block_plus_the_window() {
        // Stamp at 1000 (a block start): events up to 1007.x leave it as is.
        assert!(touched_within(1000, 1009, 2));
        assert!(!touched_within(1000, 1010, 2));
        // Stamp at 1007 (block end): still counts only until 1008 + window.
        assert!(touched_within(1007, 1009, 2));
        assert!(!touched_within(1007, 1010, 2));
        // A long window dominates.
        assert!(touched_within(1000, 1037, 30));
        assert!(!touched_within(1000, 1038, 30));
    }

    #[test]
    fn stamp_in_the_future_counts() {
        assert!(touched_within(2000, 1000, 2));
    }

    #[test]
    fn continuous_typing_never_looks_idle_to_a_2s_sampler() {
        // An event every second from 1000 on: the stamp moves only when the
        // 8 s block changes. At every whole second it must count.
        let mut stamp = 1000;
        for now in 1000..1100 {
            if (now ^ stamp) & !7 != 0 {
                stamp = now;
            }
            assert!(touched_within(stamp, now, 2), "idle at {now}");
        }
    }

    #[test]
    fn missing_pts_directory_means_no_terminals() {
        let mut found = Vec::new();
        scan(
            Path::new("/nonexistent/soong/pts"),
            SystemTime::now(),
            Duration::from_secs(2),
            &mut found,
        )
        .unwrap();
        assert!(found.is_empty());
    }

    #[test]
    fn regular_files_and_ptmx_are_not_terminals() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("0"), b"").unwrap();
        fs::write(dir.path().join("ptmx"), b"").unwrap();
        let mut found = Vec::new();
        scan(
            dir.path(),
            SystemTime::now(),
            Duration::from_secs(2),
            &mut found,
        )
        .unwrap();
        assert!(found.is_empty());
    }
}

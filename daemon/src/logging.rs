//! Where log lines go: the systemd journal, with structured fields, when the
//! daemon runs under systemd; else stderr, one line each. Both behind the
//! `log` facade.
//!
//! The journal is used when stderr *is* the journal (`JOURNAL_STREAM`
//! names stderr's device and inode, as systemd sets it for a unit) and the
//! journal socket answers; a daemon started by hand in a terminal logs to
//! the terminal, and a missing journald never loses a line. In the journal,
//! the events that matter carry fields an operator can filter on
//! (`journalctl SOONG_REASON=lease_expired`): [`field::REASON`],
//! [`field::INSTANCE_ID`], [`field::SHUTDOWN_AT`]. On stderr the same
//! fields follow the message as `KEY=value`.
//!
//! No secret is ever logged: tokens and keys live in [`Secret`]s whose
//! `Debug` is redacted and which no log line formats.
//!
//! The level comes from `SOONG_LOG` (`error`, `warn`, `info` (default),
//! `debug`, `trace`).
//!
//! [`Secret`]: soong_protocol::config::Secret

use std::fmt::Write as _;
use std::io::Write;

use log::kv::{Key, Value, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

/// The environment variable that sets the log level.
pub const LOG_ENV: &str = "SOONG_LOG";

/// The structured journal fields the daemon attaches to its key events.
pub mod field {
    /// Why the instance is (or will be) terminated: `idle_timeout`,
    /// `lease_expired`, `hard_timeout`, `shutdown_requested`.
    pub const REASON: &str = "SOONG_REASON";
    /// The Lambda instance id.
    pub const INSTANCE_ID: &str = "SOONG_INSTANCE_ID";
    /// When the instance will be terminated (RFC 3339, UTC).
    pub const SHUTDOWN_AT: &str = "SOONG_SHUTDOWN_AT";
}

/// Where the lines go.
pub enum Sink {
    /// The systemd journal, with structured fields.
    Journal(JournalLog),
    /// stderr, one line each.
    Stderr,
}

impl Sink {
    /// The journal if stderr is connected to it and its socket answers,
    /// else stderr.
    pub fn detect() -> Self {
        Self::choose(
            systemd_journal_logger::connected_to_journal(),
            JournalLog::new,
        )
    }

    /// The decision of [`Sink::detect`], with its two observations passed
    /// in (so tests can take either branch).
    pub fn choose(
        stderr_is_journal: bool,
        open_journal: impl FnOnce() -> std::io::Result<JournalLog>,
    ) -> Self {
        if !stderr_is_journal {
            return Self::Stderr;
        }
        match open_journal() {
            Ok(journal) => Self::Journal(journal.with_syslog_identifier("soong-daemon".to_owned())),
            Err(_) => Self::Stderr,
        }
    }

    /// `"journal"` or `"stderr"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Journal(_) => "journal",
            Self::Stderr => "stderr",
        }
    }
}

struct Logger {
    level: LevelFilter,
    sink: Sink,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match &self.sink {
            Sink::Journal(journal) => {
                // If journald went away, the line still goes somewhere.
                if journal.journal_send(record).is_err() {
                    write_stderr(record);
                }
            }
            Sink::Stderr => write_stderr(record),
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// `<time> <LEVEL> <target>: <message> KEY=value...`
pub fn format_line(record: &Record<'_>, now: &str) -> String {
    let mut line = format!(
        "{now} {:<5} {}: {}",
        record.level(),
        record.target(),
        record.args()
    );
    let _ = record.key_values().visit(&mut AppendFields(&mut line));
    line.push('\n');
    line
}

struct AppendFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for AppendFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

fn write_stderr(record: &Record<'_>) {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    // One write per line, so lines from different threads never interleave.
    let line = format_line(record, &now);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Installs the logger ([`Sink::detect`]). Calling it twice is harmless.
pub fn init() {
    let level = std::env::var(LOG_ENV)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(LevelFilter::Info);
    let logger = Logger {
        level,
        sink: Sink::detect(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

/// An error and its causes on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_to_stderr_when_stderr_is_not_the_journal() {
        let sink = Sink::choose(false, || panic!("the journal must not be opened"));
        assert_eq!(sink.name(), "stderr");
    }

    #[test]
    fn falls_back_to_stderr_when_the_journal_socket_does_not_answer() {
        let sink = Sink::choose(true, || {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        });
        assert_eq!(sink.name(), "stderr");
    }

    #[test]
    fn detects_stderr_outside_systemd() {
        // The test runner's stderr is not a journal stream (a test run by
        // systemd would set JOURNAL_STREAM for its own stderr, not ours).
        if std::env::var_os("JOURNAL_STREAM").is_none() {
            assert_eq!(Sink::detect().name(), "stderr");
        }
    }

    #[test]
    fn stderr_lines_carry_the_structured_fields() {
        let fields: [(&str, &str); 2] = [
            (field::REASON, "lease_expired"),
            (field::INSTANCE_ID, "i-1"),
        ];
        let record = Record::builder()
            .level(log::Level::Warn)
            .target("soong_daemon::terminator")
            .args(format_args!("terminating"))
            .key_values(&fields)
            .build();
        assert_eq!(
            format_line(&record, "T"),
            "T WARN  soong_daemon::terminator: terminating SOONG_REASON=lease_expired SOONG_INSTANCE_ID=i-1\n"
        );
    }
}

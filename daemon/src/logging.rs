//! Where log lines go: stderr, one line each, through the `log` facade.
//!
//! Under systemd, stderr lands in the journal with the unit's name, so this
//! is enough to be read there; journald fields (`SOONG_REASON`, ...) are a
//! later refinement behind the same facade. The level comes from
//! `SOONG_LOG` (`error`, `warn`, `info` (default), `debug`, `trace`).

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

/// The environment variable that sets the log level.
pub const LOG_ENV: &str = "SOONG_LOG";

struct StderrLogger {
    level: LevelFilter,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        // One write per line, so lines from different threads never interleave.
        let line = format!(
            "{now} {:<5} {}: {}\n",
            record.level(),
            record.target(),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the stderr logger. Calling it twice is harmless.
pub fn init() {
    let level = std::env::var(LOG_ENV)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(LevelFilter::Info);
    // Leaked once: the logger lives as long as the process.
    let logger: &'static StderrLogger = Box::leak(Box::new(StderrLogger { level }));
    if log::set_logger(logger).is_ok() {
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

//! The `Printer`: where every line of output goes, in one place.
//!
//! Data (tables, JSON, dry-run requests) goes to stdout so it can be piped;
//! everything else (progress, notes, warnings, errors) goes to stderr. Quiet
//! mode drops notes, verbose mode adds detail, `--json` keeps stdout
//! machine-readable. Spinners appear only on a terminal, and never when
//! quiet, verbose or in JSON mode, where they would garble what is read.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How much to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Only data, warnings and errors.
    Quiet,
    /// Data plus progress notes.
    Normal,
    /// Everything, including each API step.
    Verbose,
}

/// Prints for one run of `soong`.
#[derive(Debug, Clone)]
pub struct Printer {
    verbosity: Verbosity,
    json: bool,
    color: bool,
    stderr_tty: bool,
}

impl Printer {
    /// A printer for the given flags. `color` is already resolved from
    /// `--no-color`, `NO_COLOR` and whether stderr is a terminal.
    pub fn new(verbosity: Verbosity, json: bool, color: bool) -> Self {
        Self {
            verbosity,
            json,
            color,
            stderr_tty: std::io::stderr().is_terminal(),
        }
    }

    /// Whether machine output was asked for.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Whether stdout is a terminal that a screen refresh can redraw.
    pub fn interactive_output(&self) -> bool {
        !self.json && std::io::stdout().is_terminal()
    }

    /// Whether colours are on.
    pub fn color(&self) -> bool {
        self.color
    }

    /// One line of data on stdout.
    pub fn data(&self, text: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`soong status | head`) is not an error worth a panic.
        let _ = writeln!(out, "{}", text.as_ref());
    }

    /// A value as pretty JSON on stdout.
    pub fn json_value(&self, value: &serde_json::Value) {
        match serde_json::to_string_pretty(value) {
            Ok(text) => self.data(text),
            Err(error) => self.warn(format!("cannot serialise JSON output: {error}")),
        }
    }

    /// A progress note on stderr, unless quiet.
    pub fn info(&self, text: impl AsRef<str>) {
        if self.verbosity != Verbosity::Quiet {
            eprintln!("{}", text.as_ref());
        }
    }

    /// Detail on stderr, only with `-v`.
    pub fn verbose(&self, text: impl AsRef<str>) {
        if self.verbosity == Verbosity::Verbose {
            eprintln!("{}", self.dim(text.as_ref()));
        }
    }

    /// A warning on stderr, always.
    pub fn warn(&self, text: impl AsRef<str>) {
        eprintln!("{}: {}", self.yellow_bold("warning"), text.as_ref());
    }

    /// An error report on stderr, always.
    pub fn error_report(&self, text: &str) {
        eprintln!("{text}");
    }

    /// A spinner on stderr when one makes sense, else `None` (and the caller
    /// prints plain notes instead).
    pub fn spinner(&self, message: impl Into<String>) -> Option<ProgressBar> {
        if !self.stderr_tty || self.json || self.verbosity != Verbosity::Normal {
            return None;
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(100));
        Some(bar)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Bold.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
    /// Bold red, for errors and dead daemons.
    pub fn red_bold(&self, text: &str) -> String {
        self.paint("1;31", text)
    }
    /// Bold yellow, for warnings.
    pub fn yellow_bold(&self, text: &str) -> String {
        self.paint("1;33", text)
    }
    /// Bold cyan, for hints.
    pub fn cyan_bold(&self, text: &str) -> String {
        self.paint("1;36", text)
    }
    /// Green, for good news.
    pub fn green(&self, text: &str) -> String {
        self.paint("32", text)
    }
    /// Dim, for detail.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// A table that fits the terminal on a tty, plain otherwise.
    pub fn table(&self, header: &[&str], rows: Vec<Vec<String>>) -> String {
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::NOTHING)
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_header(header.iter().copied());
        for row in rows {
            table.add_row(row);
        }
        table
            .lines()
            .map(|line| line.trim_end().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Dollars from cents, `$1.29`.
pub fn dollars(cents: f64) -> String {
    format!("${:.2}", cents / 100.0)
}

/// A duration for people: `1h 20m`, `45s`.
pub fn human_duration(seconds: i64) -> String {
    let negative = seconds < 0;
    let s = seconds.unsigned_abs();
    let text = if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    };
    if negative { format!("-{text}") } else { text }
}

/// With `-v`, what the libraries log (the Lambda client's retries, and in
/// the demo the in-process daemons' decisions) goes to stderr.
struct VerboseLogger;

impl log::Log for VerboseLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
            && (metadata.target().starts_with("lambda_cloud")
                || metadata.target().starts_with("soong"))
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "  [{} {}] {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

static LOGGER: VerboseLogger = VerboseLogger;

/// Installs the verbose logger (once; later calls do nothing).
pub fn install_verbose_logger() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(125), "2m 05s");
        assert_eq!(human_duration(3 * 3600 + 60), "3h 01m");
        assert_eq!(human_duration(-30), "-30s");
        assert_eq!(dollars(129.0), "$1.29");
    }
}

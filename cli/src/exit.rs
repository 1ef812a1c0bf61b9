//! Exit statuses, and turning a failed command into the error report users
//! read (uv's grammar: `error: …`, `  Caused by: …`, a blank line, `hint: …`).
//!
//! Scripts branch on the status, so each class of failure a script can do
//! something about gets its own number.

use std::fmt::{self, Write as _};
use std::process::ExitCode;

use lambda_cloud::ErrorKind;

use crate::output::Printer;
use crate::settings::ConfigError;

/// How `soong` exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: the command did what was asked.
    Success,
    /// 1: anything else went wrong.
    Failure,
    /// 2: the command line or a value in it is wrong.
    Usage,
    /// 3: Lambda has no capacity for the requested type and region.
    NoCapacity,
    /// 4: the API key was refused, or the account may not do this.
    Auth,
}

impl ExitStatus {
    /// The numeric status.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::NoCapacity => 3,
            Self::Auth => 4,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}

/// A failure with a message meant for a person, an optional hint and the
/// exit status it deserves. Commands return it through `anyhow`.
#[derive(Debug)]
pub struct UserError {
    message: String,
    hint: Option<String>,
    status: ExitStatus,
}

impl UserError {
    /// A failure (status 1) with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            status: ExitStatus::Failure,
        }
    }

    /// Adds what the user can do about it.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the exit status.
    #[must_use]
    pub fn status(mut self, status: ExitStatus) -> Self {
        self.status = status;
        self
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// The status a failed command exits with: the first error in the chain
/// that knows better than "failure" decides.
pub fn status_of(error: &anyhow::Error) -> ExitStatus {
    for cause in error.chain() {
        if let Some(user) = cause.downcast_ref::<UserError>() {
            return user.status;
        }
        if let Some(api) = cause.downcast_ref::<lambda_cloud::Error>() {
            return match api.kind() {
                ErrorKind::NoCapacity => ExitStatus::NoCapacity,
                ErrorKind::Unauthorized | ErrorKind::Forbidden => ExitStatus::Auth,
                _ => ExitStatus::Failure,
            };
        }
    }
    ExitStatus::Failure
}

/// The hint for a failed command: ours first, then Lambda's suggestion.
pub fn hint_of(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        if let Some(user) = cause.downcast_ref::<UserError>() {
            user.hint.clone()
        } else if let Some(config) = cause.downcast_ref::<ConfigError>() {
            config.hint()
        } else if let Some(api) = cause.downcast_ref::<lambda_cloud::Error>() {
            api.hint()
        } else if let Some(daemon) = cause.downcast_ref::<crate::daemon_client::DaemonError>() {
            daemon.hint()
        } else {
            None
        }
    })
}

/// Prints the report of a failed command to stderr and returns its status.
pub fn report(printer: &Printer, error: &anyhow::Error) -> ExitStatus {
    let mut text = format!("{}: {error}", printer.red_bold("error"));
    for cause in error.chain().skip(1) {
        let _ = write!(text, "\n  {}: {cause}", printer.bold("Caused by"));
    }
    if let Some(hint) = hint_of(error) {
        let _ = write!(text, "\n\n{}: {hint}", printer.cyan_bold("hint"));
    }
    printer.error_report(&text);
    status_of(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_carry_their_status_through_context() {
        let error =
            anyhow::Error::new(UserError::new("no capacity").status(ExitStatus::NoCapacity))
                .context("cannot start");
        assert_eq!(status_of(&error), ExitStatus::NoCapacity);
    }

    #[test]
    fn plain_errors_are_failures() {
        assert_eq!(status_of(&anyhow::anyhow!("boom")), ExitStatus::Failure);
        assert_eq!(ExitStatus::Auth.code(), 4);
    }
}

//! Questions to the user. Never asked when stdin is not a terminal: then the
//! command fails and names the flag that answers in advance, because a
//! script that hangs on a hidden prompt is worse than one that stops.

use std::io::{BufRead, Write};

use crate::exit::{ExitStatus, UserError};
use crate::settings::Settings;

/// Asks a yes/no question (default no). `-y` answers yes; without a terminal
/// it is an error naming `--yes` and what it would have agreed to.
pub fn confirm(settings: &Settings, question: &str, what: &str) -> anyhow::Result<bool> {
    if settings.yes {
        return Ok(true);
    }
    if !settings.interactive {
        return Err(UserError::new(format!(
            "refusing to {what} without confirmation: stdin is not a terminal"
        ))
        .hint("pass `--yes` (`-y`) to confirm in advance")
        .status(ExitStatus::Usage)
        .into());
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Asks to pick one of `items` by number; `None` if the answer is not one.
pub fn choose(question: &str, items: &[String]) -> anyhow::Result<Option<usize>> {
    for (i, item) in items.iter().enumerate() {
        eprintln!("  {}) {item}", i + 1);
    }
    eprint!("{question} [1-{}] ", items.len());
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=items.len()).contains(n))
        .map(|n| n - 1))
}

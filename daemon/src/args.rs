//! Command-line arguments. The doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The on-instance cost guard of soong: terminates this Lambda Cloud
/// instance through the API when it goes idle, its lease ends, or its hard
/// timeout passes.
#[derive(Debug, Parser)]
#[command(
    name = "soong-daemon",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// The config file to run with.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A subcommand instead of running the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file and exit: 0 if the daemon would accept it.
    /// Secret files are not read (they may not exist where this runs).
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
}

//! The `soong` binary: parse the arguments, run the command, exit with its
//! status. Everything else lives in the library half of this crate, so the
//! integration tests and the demo drive exactly the code users run.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2, the usage status.
    let cli = soong::args::Cli::parse();
    soong::run(cli).into()
}

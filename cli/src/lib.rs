//! The `soong` CLI as a library: [`run`] takes parsed arguments and returns
//! the exit status. `main.rs` is a thin shell around it.
//!
//! Layout (uv's): [`args`] declares the command line, [`settings`] merges
//! flags, environment and config file, [`commands`] holds one module per
//! subcommand, [`output`] owns every byte printed, [`exit`] maps failures to
//! statuses and reports them.

pub mod ansible;
pub mod args;
pub mod commands;
pub mod daemon_client;
pub mod env_vars;
pub mod exit;
pub mod history;
pub mod instances;
pub mod models;
pub mod output;
pub mod private_file;
pub mod prompt;
pub mod settings;
pub mod ssh;
pub mod tunnel;
pub mod user_data;

use args::{Cli, Command};
use exit::ExitStatus;

/// Runs one command to completion.
pub fn run(cli: Cli) -> ExitStatus {
    let printer = settings::printer(&cli.global);
    if cli.global.verbose {
        output::install_verbose_logger();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return exit::report(
                &printer,
                &anyhow::Error::new(error).context("cannot start the async runtime"),
            );
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            // Completions need nothing but the command line's shape.
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "soong", &mut std::io::stdout());
                Ok(ExitStatus::Success)
            }
            Command::Man { dir } => man(dir.as_deref()),
            // The demo brings its own simulated cloud and config.
            Command::Demo(args) => commands::demo::run(&printer, &args).await,
            command => {
                let settings = settings::Settings::resolve(&cli.global)?;
                dispatch(&printer, &settings, command).await
            }
        }
    });
    // Daemons and the simulator of the demo run on this runtime; do not let
    // a stuck task hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(status) => status,
        Err(error) => exit::report(&printer, &error),
    }
}

/// `soong man`: the man page of the command line as declared in [`args`],
/// so it cannot drift from `--help` (the checked-in pages under
/// `cli/man/` have a test that says how to regenerate them).
pub fn man(dir: Option<&std::path::Path>) -> anyhow::Result<ExitStatus> {
    // As `generate_to` does for the pages: no `help` pseudo-command.
    let command = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(command, dir)?;
        }
        None => match clap_mangen::Man::new(command).render(&mut std::io::stdout()) {
            // `soong man | head` is not a failure.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        },
    }
    Ok(ExitStatus::Success)
}

/// Runs a command that uses the user's settings.
pub async fn dispatch(
    printer: &output::Printer,
    settings: &settings::Settings,
    command: Command,
) -> anyhow::Result<ExitStatus> {
    match command {
        Command::Configure(args) => commands::configure::run(printer, settings, &args).await,
        Command::Start(args) => commands::start::run(printer, settings, &args).await,
        Command::Status(args) => commands::status::watch(printer, settings, &args).await,
        Command::Ssh(args) => commands::ssh::run(printer, settings, &args).await,
        Command::Tunnel(args) => commands::tunnel::run(printer, settings, &args).await,
        Command::Dashboard(args) => commands::dashboard::run(printer, settings, &args).await,
        Command::History(args) => commands::history::run(printer, settings, &args).await,
        Command::Worker(args) => commands::worker::run(printer, settings, &args).await,
        Command::Extend(args) => commands::extend::run(printer, settings, &args).await,
        Command::Stop(args) => commands::stop::run(printer, settings, &args).await,
        Command::Available => commands::available::run(printer, settings).await,
        Command::Models(args) => commands::models::run(printer, settings, &args).await,
        Command::Demo(args) => commands::demo::run(printer, &args).await,
        Command::Completions { .. } | Command::Man { .. } => Ok(ExitStatus::Success),
    }
}

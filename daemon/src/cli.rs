//! What the `soong-daemon` binary does with its arguments: check a config,
//! or load the settings, bind the listener and run [`crate::serve`] until
//! SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use crate::args::{Args, Command};
use crate::settings::{Settings, load_config};

/// Runs the binary.
pub fn main() -> ExitCode {
    crate::logging::init();
    let args = Args::parse();
    let result = match (&args.command, &args.config) {
        (Some(Command::CheckConfig { file }), _) => check_config(file),
        (None, Some(file)) => run(file),
        (None, None) => {
            // A usage error: clap prints it with the usage line and exits 2.
            Args::command()
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "`--config FILE` is required (or a subcommand such as `check-config FILE`)",
                )
                .exit()
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &Path) -> anyhow::Result<()> {
    load_config(file)?;
    println!("`{}` is a valid soong-daemon config", file.display());
    Ok(())
}

fn run(file: &Path) -> anyhow::Result<()> {
    let settings = Settings::load(file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let addr = settings.config.listen;
        if !addr.ip().is_loopback() {
            log::warn!(
                "listening on {addr}, which is reachable from the network; only the bearer token protects the API (the default is loopback, reached through SSH)"
            );
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        crate::serve(settings, listener, stop_signal())
            .await
            .context("the daemon stopped with an error")
    })
}

/// Completes on SIGTERM (systemd stop) or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: stopping (state is kept; deadlines continue at the next start)"),
        _ = int.recv() => log::info!("SIGINT: stopping"),
    }
}

//! `lambda-sim`: serve a simulated Lambda Cloud API on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lambda_sim::{CommandHook, Scenario, Sim, SimConfig};

/// A local, spec-faithful simulator of the Lambda Cloud API v1.
///
/// Prints `listening on http://ADDR` on stdout once it accepts connections;
/// the API is under `/api/v1`, sim-only controls under `/sim`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Scenario file (YAML): instance types, regions, capacity, keys, filesystems, faults.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// How long instances stay `booting` (overrides the scenario), e.g. `2s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    boot_delay: Option<Duration>,
    /// Disable the 429 rate limiting (overrides the scenario).
    #[arg(long)]
    no_rate_limit: bool,
    /// Shell command to run for each instance once it boots; stopped when the
    /// instance terminates. Sees SIM_INSTANCE_ID, SIM_INSTANCE_NAME,
    /// SIM_INSTANCE_IP, SIM_USER_DATA_FILE, SIM_API_URL.
    #[arg(long)]
    on_boot: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path)?,
        None => Scenario::default(),
    };
    if let Some(delay) = args.boot_delay {
        scenario.boot_delay = delay;
    }
    if args.no_rate_limit {
        scenario.rate_limit.enabled = false;
    }
    let mut config = SimConfig::new(scenario);
    config.listen = args.listen;
    let mut hook = None;
    if let Some(command) = args.on_boot {
        let dir = std::env::temp_dir().join(format!("lambda-sim-{}", std::process::id()));
        let command_hook =
            CommandHook::new(command, dir).context("cannot set up the --on-boot hook")?;
        config.hook = Some(command_hook.as_launch_hook());
        hook = Some(command_hook);
    }
    let sim = Sim::start(config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    if let Some(hook) = &hook {
        hook.set_api_url(sim.api_url());
    }
    println!("listening on {}", sim.url());
    eprintln!(
        "lambda-sim: API at {} (key `{}`)",
        sim.api_url(),
        sim.api_key()
    );
    wait_for_signal().await?;
    if let Some(hook) = &hook {
        hook.stop_all();
    }
    sim.stop().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

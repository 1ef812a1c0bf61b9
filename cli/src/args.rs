//! The command line, declared with clap's derive API. Doc comments here are
//! the `--help` text users read, so they say what a flag does for them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Launch a Lambda Cloud GPU for an LLM in one command; never pay for a forgotten one.
///
/// An on-instance daemon terminates the instance when it sits idle, when its
/// lease runs out, or at a hard deadline, whichever comes first.
#[derive(Debug, Parser)]
#[command(
    name = "soong",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Answer yes to every question; needed when stdin is not a terminal.
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// The instance to act on, by id or name.
    #[arg(long, global = true, value_name = "ID|NAME")]
    pub instance: Option<String>,
    /// The config file [default: ~/.config/gpu-dashboard/config.yaml].
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "SOONG_CONFIG",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,
    /// Never colour the output (also `NO_COLOR`).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Say more (each API step).
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Say only what was asked for, warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the config file: asks on a terminal, or takes flags; keeps
    /// every setting it is not given.
    Configure(ConfigureArgs),
    /// Launch an instance serving a model, guarded by the soong daemon.
    Start(StartArgs),
    /// Show soong's instances: deadlines, idle time, cost so far.
    Status(StatusArgs),
    /// Log in to an instance (or run a command there) with the system `ssh`,
    /// checking its pinned host key.
    Ssh(SshArgs),
    /// Forward SGLang, n8n and the daemon to local ports over SSH, in the
    /// background, until `soong tunnel stop`.
    Tunnel(TunnelArgs),
    /// Open the daemon's dashboard in the browser (through the tunnel, which
    /// it starts if needed), or print its URL.
    Dashboard(DashboardArgs),
    /// Launches, extensions and terminations with duration and cost, totals
    /// per day, and what the cost controls saved.
    History(HistoryArgs),
    /// The watchdog worker on Cloudflare: deploy it (KV, cron, secrets),
    /// check it, follow its log, or remove all of it.
    Worker(WorkerArgs),
    /// Add hours to an instance's lease (up to its 8 h maximum).
    Extend(ExtendArgs),
    /// Terminate an instance through the Lambda API.
    Stop(StopArgs),
    /// Show instance types, prices, regions with capacity and which models fit.
    Available,
    /// The model registry: built-in and custom models, VRAM and GPU fit.
    Models(ModelsArgs),
    /// Print shell completions, e.g. `soong completions bash > /etc/bash_completion.d/soong`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    Man {
        /// Write `soong.1`, `soong-start.1`, … into DIR instead of printing `soong.1`.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run the whole system against an embedded simulated cloud; needs no
    /// account, no config and no network.
    Demo(DemoArgs),
}

/// `soong start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The model to serve (see `soong models list`) [default: config `defaults.model`].
    #[arg(long)]
    pub model: Option<String>,
    /// The instance type, e.g. `gpu_1x_a10` [default: the cheapest that fits and has capacity].
    #[arg(long, value_name = "TYPE")]
    pub gpu: Option<String>,
    /// The region [default: config `lambda.default_region`, else the filesystem's region].
    #[arg(long)]
    pub region: Option<String>,
    /// The lease: hours until the instance is terminated unless extended [default: 4].
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub hours: Option<u8>,
    /// Minutes without activity before the instance is terminated [default: 30].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=480))]
    pub idle_minutes: Option<u32>,
    /// The instance name [default: a unique `soong-…` name].
    #[arg(long)]
    pub name: Option<String>,
    /// Return once the launch is accepted, without waiting for the daemon.
    #[arg(long)]
    pub no_wait: bool,
    /// When there is no capacity, poll until there is, for up to DURATION
    /// (e.g. `45m`) [default when given without a value: 30m].
    #[arg(
        long,
        value_name = "DURATION",
        num_args = 0..=1,
        default_missing_value = "30m",
        value_parser = parse_duration
    )]
    pub wait_for_capacity: Option<std::time::Duration>,
    /// Print the launch request and user-data (secrets masked) and launch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How the instance is set up: by its user-data at first boot, or by `ansible-playbook` over SSH once it is up
    #[arg(long, value_name = "HOW", value_enum, default_value_t = Provision::CloudInit)]
    pub provision: Provision,
}

/// `soong start --provision`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Provision {
    // The full user-data of `cloud-init/user-data.yaml.tmpl`.
    #[default]
    CloudInit,
    // Only the pinned host key in the user-data; `ansible/` over SSH after boot.
    Ansible,
}

/// `soong configure`.
#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// The Lambda API key (checked against the API).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// The Lambda API's base URL.
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// The default region.
    #[arg(long)]
    pub region: Option<String>,
    /// The persistent filesystem to attach (must be in the region).
    #[arg(long, value_name = "NAME")]
    pub filesystem: Option<String>,
    /// Create the filesystem in the region if it does not exist.
    #[arg(long)]
    pub create_filesystem: bool,
    /// The Lambda SSH key to launch with.
    #[arg(long, value_name = "NAME")]
    pub ssh_key: Option<String>,
    /// The default model.
    #[arg(long)]
    pub model: Option<String>,
    /// The default instance type.
    #[arg(long, value_name = "TYPE")]
    pub gpu: Option<String>,
    /// The default lease in hours.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub lease_hours: Option<u8>,
    /// The default idle timeout in minutes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=480))]
    pub idle_minutes: Option<u32>,
    /// How to reach the daemon: `ssh` or `direct`.
    #[arg(long, value_parser = ["ssh", "direct"])]
    pub access: Option<String>,
    /// Generate a new daemon token (instances launched before keep the old one).
    #[arg(long)]
    pub rotate_token: bool,
    /// Do not check the settings against the API.
    #[arg(long)]
    pub no_check: bool,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration like `30m` or `1h`: {error}"))
}

/// `soong status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Refresh every SECONDS until interrupted [default when given without a value: 10].
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "10",
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub watch: Option<u64>,
}

/// `soong ssh`.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// The command to run instead of a login shell, after `--`
    /// (e.g. `soong ssh -- nvidia-smi`); its exit status is soong's.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `soong tunnel`.
#[derive(Debug, Args)]
pub struct TunnelArgs {
    /// What to do [default: start].
    #[command(subcommand)]
    pub action: Option<TunnelAction>,
    /// The local port for SGLang (the instance's 8000) [default: 8000, or a free one when busy].
    #[arg(long, global = true, value_name = "PORT")]
    pub sglang_port: Option<u16>,
    /// The local port for n8n (the instance's 5678) [default: 5678, or a free one when busy].
    #[arg(long, global = true, value_name = "PORT")]
    pub n8n_port: Option<u16>,
    /// The local port for the soong daemon (the instance's `status_daemon.port`)
    /// [default: that port, or a free one when busy].
    #[arg(long, global = true, value_name = "PORT")]
    pub status_port: Option<u16>,
}

/// `soong tunnel …`.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum TunnelAction {
    /// Start the tunnel (in the background; one per instance).
    Start,
    /// Stop the tunnel soong started (only that ssh process).
    Stop,
    /// Show the tunnels and whether each forward answers.
    Status,
}

/// `soong dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Print the URL (it holds the token) instead of opening a browser.
    #[arg(long)]
    pub print: bool,
}

/// `soong history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// How many days back, today included.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: u32,
}

/// `soong worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: WorkerAction,
}

/// `soong worker …`.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum WorkerAction {
    /// Deploy (or update) the worker with its KV namespace, cron and secrets.
    Deploy,
    /// Whether the worker answers, and its deployments.
    Status,
    /// Follow the worker's log (`wrangler tail`).
    Logs,
    /// Remove the worker, its cron trigger, its secrets and its KV namespace.
    Destroy,
}

/// `soong extend`.
#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// Hours to add to the lease (fractions allowed).
    pub hours: f64,
}

/// `soong stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Return once the API accepted the termination, without waiting for it.
    #[arg(long)]
    pub no_wait: bool,
}

/// `soong models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// What to do with the registry [default: list].
    #[command(subcommand)]
    pub command: Option<ModelsCommand>,
}

/// `soong models …`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List every model with its VRAM need.
    List,
    /// Show one model in detail.
    Info {
        /// The model id.
        model: String,
    },
    /// Add a custom model to the config.
    Add(AddModelArgs),
    /// Remove a custom model from the config.
    Remove {
        /// The model id.
        model: String,
    },
    /// Recommend instance types for a model (or for every model).
    Recommend {
        /// The model id [default: every model].
        model: Option<String>,
    },
}

/// `soong models add`.
#[derive(Debug, Args)]
pub struct AddModelArgs {
    /// The id to use in `--model`.
    pub id: String,
    /// The Hugging Face repository, e.g. `Qwen/Qwen2.5-7B-Instruct`.
    #[arg(long)]
    pub hf_path: String,
    /// Parameters, in billions.
    #[arg(long)]
    pub params_billions: f64,
    /// Weight format: bf16, fp16, fp8, awq, gptq-int4, int8.
    #[arg(long, default_value = "bf16")]
    pub quantization: String,
    /// Context length served, in tokens.
    #[arg(long, default_value_t = 32768)]
    pub context_length: u32,
    /// Transformer layers (sharpens the KV-cache estimate).
    #[arg(long)]
    pub layers: Option<u32>,
    /// Key/value heads (sharpens the KV-cache estimate).
    #[arg(long)]
    pub kv_heads: Option<u32>,
    /// Dimension of one attention head.
    #[arg(long)]
    pub head_dim: Option<u32>,
    /// Replace a custom model of the same id.
    #[arg(long)]
    pub force: bool,
}

/// `soong demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seconds without activity before the daemon terminates the demo instance.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(5..=300))]
    pub idle_seconds: u64,
}

//! `soong demo`: the whole system on this machine, with nothing configured
//! and no network.
//!
//! It starts the Lambda simulator in-process on loopback, writes a config
//! into a temporary directory, and then runs the real `start`, `status` and
//! `extend` code paths against it. The simulator's launch hook plays the
//! part of cloud-init: for each booted instance it reads the user-data the
//! CLI generated and runs a real `soong-daemon` (the library, in-process)
//! on the instance's own 127.x address, plus a stand-in for SGLang on port
//! 8000. The demo sends requests to that port (the daemon sees them as
//! activity), stops, and lets the daemon terminate the idle instance
//! through the simulated API by itself. Durations are seconds, not hours.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lambda_sim::{BootedInstance, LaunchHook, Scenario, Sim, SimConfig, SimEvent};
use soong_protocol::api::DaemonState;
use soong_protocol::config::{DaemonConfig, Secret};
use soong_protocol::lease::Policy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::args::{DemoArgs, ExtendArgs, StartArgs};
use crate::daemon_client::DaemonClient;
use crate::exit::ExitStatus;
use crate::output::{Printer, dollars};
use crate::settings::{Access, ConfigFile, Settings};
use crate::user_data;

/// The port of the stand-in model server (SGLang's).
const MODEL_PORT: u16 = 8000;
/// The daemon's port.
const DAEMON_PORT: u16 = 8080;
/// The model the demo "serves".
const MODEL: &str = "llama-3.1-8b";

/// What runs "on" each simulated instance: a real daemon (and a stand-in
/// model server) per booted instance, stopped when it is terminated. The
/// simulator's launch hook drives it; tests use it too.
pub struct Machines {
    runtime: tokio::runtime::Handle,
    state_root: PathBuf,
    running: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Instances whose daemon failed, with why.
    failures: Mutex<Vec<String>>,
    /// The SSH host key each booted instance got in its user-data.
    host_keys: Mutex<HashMap<String, soong_protocol::config::Secret>>,
    /// Each booted instance's address.
    addresses: Mutex<HashMap<String, std::net::Ipv4Addr>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Machines {
    /// Machines whose processes run on `runtime`, with state under `state_root`.
    pub fn new(runtime: tokio::runtime::Handle, state_root: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            state_root,
            running: Mutex::new(HashMap::new()),
            failures: Mutex::new(Vec::new()),
            host_keys: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        })
    }

    /// The hook to give the simulator.
    pub fn hook(self: &Arc<Self>) -> LaunchHook {
        let this = Arc::clone(self);
        Arc::new(move |event| this.on_event(event))
    }

    /// Why daemons failed, if any did.
    pub fn failures(&self) -> Vec<String> {
        lock(&self.failures).clone()
    }

    /// The SSH host key (OpenSSH PEM) the instance `id` was given, once it
    /// booted: what its sshd would present (tests start one with it).
    pub fn host_key(&self, id: &str) -> Option<soong_protocol::config::Secret> {
        lock(&self.host_keys).get(id).cloned()
    }

    /// The instances that booted, with their addresses.
    pub fn booted(&self) -> Vec<(String, std::net::Ipv4Addr)> {
        lock(&self.addresses)
            .iter()
            .map(|(id, ip)| (id.clone(), *ip))
            .collect()
    }

    /// Stops every instance's processes.
    pub fn stop_all(&self) {
        for (_, stop) in lock(&self.running).drain() {
            let _ = stop.send(());
        }
    }

    /// Boot → start the instance's processes; terminate → stop them. Runs
    /// on the simulator's tick, so it only spawns.
    fn on_event(self: &Arc<Self>, event: SimEvent) {
        match event {
            SimEvent::Booted(instance) => {
                lock(&self.addresses).insert(instance.id.clone(), instance.ip);
                if let Some(key) = instance
                    .user_data
                    .as_deref()
                    .and_then(|text| user_data::extract(text).ok())
                    .and_then(|extracted| extracted.host_key)
                {
                    lock(&self.host_keys).insert(instance.id.clone(), key);
                }
                let (stop, stopped) = oneshot::channel();
                lock(&self.running).insert(instance.id.clone(), stop);
                let this = Arc::clone(self);
                let state_dir = self.state_root.join(&instance.id);
                self.runtime.spawn(async move {
                    let id = instance.id.clone();
                    if let Err(error) = boot(instance, state_dir, stopped).await {
                        lock(&this.failures).push(format!("{id}: {error:#}"));
                    }
                });
            }
            SimEvent::Terminated { id } => {
                if let Some(stop) = lock(&self.running).remove(&id) {
                    let _ = stop.send(());
                }
            }
        }
    }
}

/// Runs `soong demo`.
pub async fn run(printer: &Printer, args: &DemoArgs) -> anyhow::Result<ExitStatus> {
    let started = Instant::now();
    let home = tempfile::Builder::new()
        .prefix("soong-demo-")
        .tempdir()
        .context("cannot create the demo's temporary directory")?;
    let step = |n: u32, text: &str| {
        printer.info(format!("\n{} {text}", printer.bold(&format!("[{n}/6]"))));
    };
    let note = |text: String| printer.info(format!("      {text}"));

    step(
        1,
        "Starting a simulated Lambda Cloud on loopback (no account, no network)",
    );
    let machines = Machines::new(
        tokio::runtime::Handle::current(),
        home.path().join("instances"),
    );
    let mut scenario = Scenario::default();
    // The demo's own clients are the only callers; rate limits would only
    // make it slower. Lambda's real limits are honoured by the client.
    scenario.rate_limit.enabled = false;
    scenario.boot_delay = Duration::from_secs(3);
    scenario.terminate_delay = Duration::from_secs(1);
    let config = SimConfig::new(scenario).with_hook(machines.hook());
    let sim = Sim::start(config)
        .await
        .context("cannot start the simulator")?;
    note(format!("API at {}", sim.api_url()));

    let settings = demo_settings(&sim, home.path())?;
    note(format!(
        "config written to `{}` (mode 0600): SSH key `default`, filesystem `coding-stack` in us-west-1",
        settings.config_path.display()
    ));

    step(
        2,
        "soong start: validate, estimate, launch, wait for the daemon",
    );
    let policy = Policy {
        idle_timeout: Duration::from_secs(args.idle_seconds),
        lease: Duration::from_secs(90),
        max_lease: Duration::from_secs(120),
        hard_timeout: Duration::from_secs(180),
    };
    note(format!(
        "demo policy: idle {}s, lease 90s (max 120s), hard 180s (real defaults: 30 min, 4 h, 8 h, 8 h)",
        args.idle_seconds
    ));
    let start_args = StartArgs {
        model: Some(MODEL.to_owned()),
        gpu: None,
        region: None,
        hours: None,
        idle_minutes: None,
        name: None,
        no_wait: false,
        wait_for_capacity: None,
        dry_run: false,
        provision: crate::args::Provision::CloudInit,
    };
    let launched = crate::commands::start::start(printer, &settings, &start_args, Some(policy))
        .await?
        .context("the demo's launch returned nothing")?;
    if !launched.healthy {
        anyhow::bail!(
            "the demo instance's daemon never became healthy: {}",
            machines.failures().join("; ")
        );
    }
    let instance = launched.instance;
    let name = instance.name.clone().unwrap_or_else(|| instance.id.clone());
    let ip: IpAddr = instance
        .ip
        .as_deref()
        .unwrap_or("127.0.0.1")
        .parse()
        .context("the simulated instance has no usable IP")?;
    let token = settings.require_token()?.clone();
    let daemon = DaemonClient::direct(
        &format!("http://{ip}:{}", settings.config.status_daemon.port),
        &token,
        Duration::from_secs(3),
    );

    step(
        3,
        "soong status: one list call, one daemon call per instance",
    );
    crate::commands::status::run(printer, &settings).await?;

    step(4, "Traffic to the model port keeps the instance alive");
    let traffic_until =
        Instant::now() + Duration::from_secs(u64::from(args.idle_seconds.min(30) as u32) + 5);
    while Instant::now() < traffic_until {
        let sent = request_model(SocketAddr::new(ip, MODEL_PORT)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(status) = daemon.status().await {
            note(format!(
                "request to {ip}:{MODEL_PORT} {}; daemon: idle {}s of {}s, last activity: {}",
                if sent { "answered" } else { "failed" },
                status.idle_seconds,
                status.idle_timeout_seconds,
                status.last_activity_source.as_deref().unwrap_or("start-up")
            ));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    step(
        5,
        "soong extend: ask the daemon for more lease (it is capped at max_lease)",
    );
    crate::commands::extend::run(printer, &settings, &ExtendArgs { hours: 0.02 }).await?;

    step(
        6,
        "No more traffic: the daemon terminates the idle instance by itself",
    );
    let price = instance.instance_type.price_cents_per_hour;
    let mut reason = None;
    let deadline = Instant::now() + Duration::from_secs(args.idle_seconds + 60);
    let mut last_idle = None;
    loop {
        match daemon.status().await {
            Ok(status) if status.state == DaemonState::Terminating => {
                if reason.is_none() {
                    let why = status
                        .terminate_reason
                        .map_or("requested", |r| r.as_str())
                        .to_owned();
                    note(format!(
                        "daemon: terminating `{name}` ({why}), calling the Lambda API"
                    ));
                    reason = Some(why);
                }
            }
            Ok(status) => {
                if last_idle != Some(status.idle_seconds / 5) {
                    last_idle = Some(status.idle_seconds / 5);
                    note(format!(
                        "daemon: idle {}s of {}s; shutdown at {} ({})",
                        status.idle_seconds,
                        status.idle_timeout_seconds,
                        crate::commands::start::clock(status.shutdown_at),
                        status.shutdown_reason
                    ));
                }
            }
            Err(_) => {}
        }
        let record = sim
            .billing()
            .into_iter()
            .find(|b| b.instance_id == instance.id);
        if let Some(record) = record
            && !record.running
        {
            let forgotten = price as f64 * 8.0;
            note(format!(
                "Lambda (simulated) confirms `{name}` terminated; billing stopped after {:.0}s: {}",
                record.billed_seconds,
                dollars(record.cost_cents)
            ));
            printer.info(format!(
                "\n{} the instance was terminated by its daemon ({}), not by the CLI.\nForgotten without soong it would have billed {}/h until someone noticed: {} for a working day of 8 h, {} for a weekend.\nDemo finished in {:.0}s.",
                printer.green("Done:"),
                reason.as_deref().unwrap_or("idle_timeout"),
                dollars(price as f64),
                dollars(forgotten),
                dollars(price as f64 * 64.0),
                started.elapsed().as_secs_f64()
            ));
            if printer.json() {
                printer.json_value(&serde_json::json!({
                    "instance_id": instance.id,
                    "name": name,
                    "terminated_by": "daemon",
                    "reason": reason,
                    "billed_seconds": record.billed_seconds,
                    "cost_cents": record.cost_cents,
                }));
            }
            break;
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the daemon did not terminate the idle demo instance in time");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    machines.stop_all();
    sim.stop().await;
    Ok(ExitStatus::Success)
}

/// A port free on loopback now. The simulator hands out 127.0.1.1 first,
/// so a fixed port could meet another demo (or test) running beside this
/// one; the daemon's port is the one thing the config lets the demo choose.
fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .ok()
}

/// Settings as `soong configure` would write them, pointing at the simulator.
fn demo_settings(sim: &Sim, home: &Path) -> anyhow::Result<Settings> {
    let config_path = home.join(".config/gpu-dashboard/config.yaml");
    let mut config = ConfigFile::default();
    config.lambda.api_key = Some(Secret::new(sim.api_key()));
    config.lambda.api_url = Some(sim.api_url());
    config.lambda.default_region = Some("us-west-1".to_owned());
    config.lambda.filesystem_name = Some("coding-stack".to_owned());
    config.lambda.ssh_key_name = Some("default".to_owned());
    config.status_daemon.token = Some(Secret::new(crate::settings::generate_token()));
    config.status_daemon.port = free_port().unwrap_or(DAEMON_PORT);
    // The simulator's instances are loopback addresses: talk to the daemon
    // directly, as `status_daemon.access: direct` does.
    config.status_daemon.access = Access::Direct;
    config.defaults.model = Some(MODEL.to_owned());
    // The demo's "instances" run the daemon in this process; the user-data
    // still names a binary, as a real launch's must.
    config.provision.daemon_binary_url = Some("https://soong.invalid/demo/soong-daemon".to_owned());
    config.provision.daemon_binary_sha256 = Some("0".repeat(64));
    config.save(&config_path)?;
    Ok(Settings {
        config_path,
        config_exists: true,
        api_key: config.lambda.api_key.clone(),
        api_url: sim.api_url(),
        config,
        yes: true,
        instance: None,
        interactive: false,
        no_pacing: true,
        wait_scale: 0.05,
        // The demo's launches stay out of the user's history.
        state_dir: home.join(".local/state/soong"),
    })
}

/// What cloud-init and systemd do on a real instance: read the user-data,
/// write the daemon's config, start the daemon (and the model server).
async fn boot(
    instance: BootedInstance,
    state_dir: PathBuf,
    stopped: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let user_data = instance
        .user_data
        .as_deref()
        .context("the instance has no user-data")?;
    let extracted = user_data::extract(user_data)?;
    let mut config =
        DaemonConfig::parse(Path::new(user_data::DAEMON_CONFIG_PATH), &extracted.config)?;
    // The instance's "machine" is its loopback address and a directory.
    // A daemon meant to be reached over SSH listens on the machine's own
    // loopback, which here is the host's: the sshd of a test forwards to it.
    if !config.listen.ip().is_loopback() {
        config.listen = SocketAddr::new(IpAddr::V4(instance.ip), config.listen.port());
    }
    config.state_dir = state_dir;
    config.token_file = None;
    config.token = Some(extracted.token);
    config.lambda.api_key_file = None;
    config.lambda.api_key = Some(extracted.api_key);
    if let Some(worker) = &mut config.worker {
        worker.token_file = None;
        worker.token = extracted.worker_token;
    }
    config.activity.sample_interval = Duration::from_secs(1);
    let problems = config.check();
    anyhow::ensure!(
        problems.is_empty(),
        "the daemon config from the user-data is invalid: {}",
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let mut settings =
        soong_daemon::Settings::from_config(Path::new(user_data::DAEMON_CONFIG_PATH), config)?;
    settings.client.pacing = lambda_cloud::Pacing::none();
    let listener = tokio::net::TcpListener::bind(settings.config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.config.listen))?;
    // The stand-in model server is a nicety: without it the daemon still
    // guards the instance (tests running side by side may hold the port).
    let model_server =
        match tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(instance.ip), MODEL_PORT))
            .await
        {
            Ok(model) => Some(tokio::spawn(serve_model(model))),
            Err(error) => {
                log::warn!(
                    "no stand-in model server on {}:{MODEL_PORT}: {error}",
                    instance.ip
                );
                None
            }
        };
    let result = soong_daemon::serve(settings, listener, async {
        let _ = stopped.await;
    })
    .await;
    if let Some(model_server) = model_server {
        model_server.abort();
    }
    result.context("the daemon failed")
}

/// A stand-in for SGLang: answers every request with a tiny completion.
async fn serve_model(listener: tokio::net::TcpListener) {
    while let Ok((mut socket, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = socket.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                let body = r#"{"choices":[{"text":"Hello from the demo model"}]}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if socket.write_all(response.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// One request to the model port, holding the connection a moment so the
/// daemon's sampler sees it established.
async fn request_model(address: SocketAddr) -> bool {
    let Ok(Ok(mut socket)) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(address),
    )
    .await
    else {
        return false;
    };
    let request = "POST /v1/completions HTTP/1.1\r\nhost: demo\r\ncontent-length: 2\r\n\r\n{}";
    if socket.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut buffer = [0u8; 1024];
    let answered = matches!(
        tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buffer)).await,
        Ok(Ok(n)) if n > 0
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    answered
}

//! `lambda-sim`: a local, spec-faithful simulator of the Lambda Cloud API v1.
//!
//! It is the test double for every part of soong that talks to Lambda, and the
//! cloud that `soong demo` runs against. It answers on loopback exactly as the
//! real API does (the `{"data"}`/`{"error"}` envelopes, codes and statuses of
//! the OpenAPI spec, which its tests validate every response against), and it
//! models what cost control depends on: instance lifecycle, capacity, billing,
//! rate limits, and faults.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! let sim = lambda_sim::Sim::start(lambda_sim::SimConfig::for_tests()).await?;
//! println!("API at {}, key {}", sim.api_url(), sim.api_key());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod api;
mod errors;
mod hooks;
pub mod scenario;
mod world;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_cloud::InstanceStatus;
use lambda_cloud::types::Tag;
use poem::listener::TcpAcceptor;
use poem::{EndpointExt, Route, Server, get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use api::{OPERATIONS, RequestRecord, serves};
pub use errors::ApiError;
pub use hooks::CommandHook;
pub use scenario::{DEFAULT_API_KEY, Faults, Scenario, ScriptedFault};
pub use world::{BillingRecord, BootedInstance, SimEvent, World};

use api::{Shared, lock};

/// Called for every lifecycle event that something "on" an instance cares
/// about: boot (start the instance's services) and termination (stop them).
/// It runs on the simulator's tick, so it must return quickly.
pub type LaunchHook = Arc<dyn Fn(SimEvent) + Send + Sync>;

/// How to start a simulator.
#[derive(Clone)]
pub struct SimConfig {
    /// The simulated account.
    pub scenario: Scenario,
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Runs something for each instance as it boots and terminates.
    pub hook: Option<LaunchHook>,
}

impl SimConfig {
    /// The default scenario, listening on a free loopback port.
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            hook: None,
        }
    }

    /// For tests: no rate limits, and a lifecycle measured in fractions of a second.
    pub fn for_tests() -> Self {
        let mut scenario = Scenario::default();
        scenario.rate_limit.enabled = false;
        scenario.boot_delay = Duration::from_millis(200);
        scenario.terminate_delay = Duration::from_millis(200);
        scenario.gone_delay = Duration::from_secs(10);
        Self::new(scenario)
    }

    /// Sets the launch hook.
    #[must_use]
    pub fn with_hook(mut self, hook: LaunchHook) -> Self {
        self.hook = Some(hook);
        self
    }
}

/// An instance put straight into the account, bypassing launch (for tests
/// that need one in a given state without waiting for pacing or boot).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInstance {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Status to start in (default `active`).
    #[serde(default = "active")]
    pub status: InstanceStatus,
    /// Instance type (default `gpu_1x_a10`).
    #[serde(default = "default_type")]
    pub instance_type: String,
    /// Region (default `us-west-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// User-data.
    #[serde(default)]
    pub user_data: Option<String>,
}

fn active() -> InstanceStatus {
    InstanceStatus::Active
}
fn default_type() -> String {
    "gpu_1x_a10".into()
}
fn default_region() -> String {
    "us-west-1".into()
}

impl Default for NewInstance {
    fn default() -> Self {
        Self {
            name: None,
            tags: Vec::new(),
            status: active(),
            instance_type: default_type(),
            region: default_region(),
            user_data: None,
        }
    }
}

/// A running simulator. It stops when dropped.
pub struct Sim {
    address: SocketAddr,
    api_key: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Sim {
    /// Binds, starts serving in the background, and returns once the socket
    /// accepts connections.
    pub async fn start(config: SimConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let address = listener.local_addr()?;
        let api_key = config
            .scenario
            .api_keys
            .first()
            .cloned()
            .unwrap_or_else(|| DEFAULT_API_KEY.to_owned());
        let shared = Arc::new(Shared::new(World::new(config.scenario), config.hook));
        let app = Route::new()
            .at("/api/v1/*path", api::api)
            .at("/sim/requests", get(api::control_requests))
            .at("/sim/billing", get(api::control_billing))
            .at(
                "/sim/faults",
                get(api::control_get_faults).put(api::control_put_faults),
            )
            .at("/sim/instances", post(api::control_insert_instance))
            .at("/sim/instances/:id/status", post(api::control_force_status))
            .data(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let acceptor = TcpAcceptor::from_tokio(listener)?;
        let ticker_shared = Arc::clone(&shared);
        let server = tokio::spawn(async move {
            let ticker = async move {
                let mut interval = tokio::time::interval(api::TICK);
                loop {
                    interval.tick().await;
                    ticker_shared.advance();
                }
            };
            let serve = Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                app,
                async {
                    let _ = stopped.await;
                },
                Some(Duration::from_secs(1)),
            );
            tokio::select! {
                result = serve => {
                    if let Err(error) = result {
                        log::error!("simulator server failed: {error}");
                    }
                }
                () = ticker => {}
            }
        });
        Ok(Self {
            address,
            api_key,
            shared,
            shutdown: Some(stop),
            server: Some(server),
        })
    }

    /// The address the simulator listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The API base URL, `http://127.0.0.1:PORT/api/v1`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v1", self.url())
    }

    /// An API key the simulator accepts.
    pub fn api_key(&self) -> String {
        self.api_key.clone()
    }

    /// Every API request so far (the newest 10,000).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.request_log()
    }

    /// Every instance's billing meter.
    pub fn billing(&self) -> Vec<BillingRecord> {
        self.shared.advance();
        lock(&self.shared.world).billing(Instant::now())
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.shared.world).set_faults(faults);
    }

    /// Puts an instance into the account directly; returns its id.
    pub fn insert_instance(&self, new: NewInstance) -> Result<String, ApiError> {
        lock(&self.shared.world).insert_instance(new, Instant::now())
    }

    /// Forces an instance's status; false if there is no such instance.
    pub fn force_status(&self, id: &str, status: InstanceStatus) -> bool {
        lock(&self.shared.world).force_status(id, status, Instant::now())
    }

    /// Stops serving and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            // The ticker never ends on its own; aborting the task also ends the
            // server once its graceful shutdown is no longer awaited.
            server.abort();
        }
    }
}

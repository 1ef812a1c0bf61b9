//! Shared test equipment: a simulator with one instance, a config in a temp
//! dir, the daemon as a real process behind a kill-on-drop guard (or
//! in-process on port 0), and an HTTP client that speaks to it.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lambda_cloud::Tag;
use lambda_sim::{NewInstance, RequestRecord, Sim, SimConfig};
use serde_json::Value;
use soong_protocol::api::StatusResponse;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const TOKEN: &str = "test-token-0123456789abcdef";
pub const TERMINATE_PATH: &str = "/api/v1/instance-operations/terminate";

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

/// The policy, in config syntax.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub idle: &'static str,
    pub lease: &'static str,
    pub max_lease: &'static str,
    pub hard: &'static str,
}

impl Default for Policy {
    /// Long enough that nothing fires during a test unless it says so.
    fn default() -> Self {
        Self {
            idle: "10m",
            lease: "20m",
            max_lease: "40m",
            hard: "60m",
        }
    }
}

/// One simulated instance and a daemon config for it.
pub struct TestContext {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub instance_id: String,
    pub instance_name: String,
    pub port: u16,
    pub launched_at: OffsetDateTime,
    pub http: reqwest::Client,
}

impl TestContext {
    pub async fn new() -> Self {
        let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
        let instance_name = format!("soong-test-{}", free_port());
        let instance_id = sim
            .insert_instance(NewInstance {
                name: Some(instance_name.clone()),
                tags: vec![Tag::new("soong:managed", "true")],
                ..NewInstance::default()
            })
            .unwrap();
        Self {
            sim,
            dir: tempfile::tempdir().unwrap(),
            instance_id,
            instance_name,
            port: free_port(),
            launched_at: OffsetDateTime::now_utc(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The config YAML: this instance by id, no sampler, and `extra` appended.
    pub fn config_text(&self, policy: Policy, extra: &str) -> String {
        format!(
            "listen: 127.0.0.1:{port}\n\
             token: {TOKEN}\n\
             lambda:\n  api_url: {api}\n  api_key: {key}\n\
             instance:\n  id: {id}\n  name: {name}\n  launched_at: {launched}\n\
             policy:\n  idle_timeout: {idle}\n  lease: {lease}\n  max_lease: {max}\n  hard_timeout: {hard}\n\
             activity:\n  ports: []\n  terminals: false\n  sample_interval: 1s\n\
             state_dir: {state}\n{extra}",
            port = self.port,
            api = self.sim.api_url(),
            key = self.sim.api_key(),
            id = self.instance_id,
            name = self.instance_name,
            launched = rfc3339(self.launched_at),
            idle = policy.idle,
            lease = policy.lease,
            max = policy.max_lease,
            hard = policy.hard,
            state = self.state_dir().display(),
        )
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("daemon.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts the daemon binary on `config` and waits until `/health` answers.
    pub async fn spawn(&self, config: &Path) -> DaemonProcess {
        let process = DaemonProcess::start(config, &self.dir.path().join("daemon.log"));
        self.wait_healthy().await;
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            if let Ok(response) = self.http.get(self.url("/health")).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the daemon never became healthy; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub async fn status(&self) -> StatusResponse {
        let response = self.get("/status").await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Every terminate request the simulator saw.
    pub fn terminate_calls(&self) -> Vec<RequestRecord> {
        self.sim
            .request_log()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == TERMINATE_PATH)
            .collect()
    }

    /// The terminate requests that succeeded, each checked to name our instance only.
    pub fn effective_terminates(&self) -> Vec<RequestRecord> {
        let calls: Vec<RequestRecord> = self
            .terminate_calls()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect();
        for call in &calls {
            assert_eq!(
                call.request
                    .as_ref()
                    .and_then(|b| b.get("instance_ids"))
                    .cloned(),
                Some(Value::from(vec![self.instance_id.clone()])),
                "terminate must name exactly our instance"
            );
        }
        calls
    }

    pub async fn wait_terminated(&self, timeout: Duration) -> RequestRecord {
        wait_for("an effective terminate call", timeout, || {
            self.effective_terminates().into_iter().next()
        })
        .await
    }
}

/// The arrival time of a simulator request.
pub fn arrival(record: &RequestRecord) -> OffsetDateTime {
    OffsetDateTime::parse(&record.at, &Rfc3339).unwrap()
}

/// A daemon process, killed (SIGKILL) when dropped.
pub struct DaemonProcess {
    child: Option<Child>,
}

impl DaemonProcess {
    pub fn start(config: &Path, log: &Path) -> Self {
        Self::start_with_env(config, log, &[])
    }

    /// [`DaemonProcess::start`] with extra environment variables.
    pub fn start_with_env(config: &Path, log: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Self {
        let log = File::options().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_soong-daemon"))
            .arg("--config")
            .arg(config)
            .env("SOONG_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child: Some(child) }
    }

    /// `kill -9`: no chance to persist anything on the way out.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        child.wait().unwrap()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A daemon running in this test process via `serve` on a port-0 listener.
pub struct InProcess {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), soong_daemon::ServeError>>>,
}

impl InProcess {
    /// Starts `serve` with fast client settings (no pacing, quick retries).
    pub async fn start(config_file: &Path) -> Self {
        let mut settings = soong_daemon::Settings::load(config_file).unwrap();
        settings.client.pacing = lambda_cloud::Pacing::none();
        settings.client.timeout = Duration::from_secs(5);
        settings.terminate_backoff.base = Duration::from_millis(200);
        settings.terminate_backoff.max = Duration::from_secs(1);
        settings.identity_backoff = settings.terminate_backoff;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(soong_daemon::serve(settings, listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

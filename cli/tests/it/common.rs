//! `TestContext`: a simulator on port 0, a config in a temp dir, the
//! environment set, and `soong` run as a subprocess. `soong_snapshot!`
//! captures exit status, stdout and stderr with the unstable parts (temp
//! paths, ports, ids, times) replaced, for insta's inline snapshots.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lambda_sim::{Sim, SimConfig};

/// One test's world.
pub struct TestContext {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub sim: Option<Sim>,
    /// Real daemons for the simulator's instances, when asked for.
    pub machines: Option<std::sync::Arc<soong::commands::demo::Machines>>,
    // Declared last: dropped after the simulator it runs.
    pub runtime: tokio::runtime::Runtime,
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

impl TestContext {
    /// No simulator; the config is a copy of `fixture` (or none).
    pub fn new(fixture_name: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        if let Some(name) = fixture_name {
            // Every simulator hands out 127.0.1.1 first, so daemons of tests
            // running side by side would share an address: each test gets
            // its own daemon port instead.
            let text = std::fs::read_to_string(fixture(name))
                .unwrap()
                .replace("port: 8080", &format!("port: {}", free_port()));
            std::fs::write(&config, text).unwrap();
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Self {
            dir,
            config,
            sim: None,
            machines: None,
            runtime,
        }
    }

    /// With a simulator started from `config`.
    pub fn with_sim(fixture_name: &str, config: SimConfig) -> Self {
        let mut context = Self::new(Some(fixture_name));
        let sim = context.runtime.block_on(Sim::start(config)).unwrap();
        context.sim = Some(sim);
        context
    }

    /// With a simulator whose booted instances each run a real
    /// `soong-daemon` (in this process) from the user-data `soong` sent.
    pub fn with_daemons(fixture_name: &str) -> Self {
        let mut context = Self::new(Some(fixture_name));
        let machines = soong::commands::demo::Machines::new(
            context.runtime.handle().clone(),
            context.dir.path().join("instances"),
        );
        let config = SimConfig::for_tests().with_hook(machines.hook());
        let sim = context.runtime.block_on(Sim::start(config)).unwrap();
        context.sim = Some(sim);
        context.machines = Some(machines);
        context
    }

    pub fn sim(&self) -> &Sim {
        self.sim.as_ref().unwrap()
    }

    /// `soong ARGS` with the test's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_soong"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("SOONG_CONFIG", &self.config)
            .env("SOONG_NO_PACING", "1")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null());
        if let Some(sim) = &self.sim {
            command
                .env("SOONG_API_URL", sim.api_url())
                .env("LAMBDA_API_KEY", sim.api_key());
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Filters for snapshots.
    pub fn filters(&self) -> Vec<(String, String)> {
        let mut filters = vec![
            (
                regex_escape(&self.dir.path().display().to_string()),
                "[TEMP]".to_owned(),
            ),
            (r"127\.\d+\.\d+\.\d+:\d+".to_owned(), "[ADDR]".to_owned()),
            (r"0\.0\.0\.0:\d+".to_owned(), "0.0.0.0:[PORT]".to_owned()),
            (r"\b[0-9a-f]{32}\b".to_owned(), "[ID]".to_owned()),
            (r"\b1[0-9]{9}\b".to_owned(), "[UNIX]".to_owned()),
            (
                r"soong-[a-z0-9.-]+-[0-9a-f]{6}\b".to_owned(),
                "[NAME]".to_owned(),
            ),
            (
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z".to_owned(),
                "[TIME]".to_owned(),
            ),
            (r"\d\d:\d\d:\d\d UTC".to_owned(), "[CLOCK]".to_owned()),
            (
                r"ssh-ed25519 [A-Za-z0-9+/]+=*".to_owned(),
                "ssh-ed25519 [PUBLIC KEY]".to_owned(),
            ),
        ];
        // The user-data's daemon config, base64 (its decoded text is
        // printed, and filtered, below it).
        filters.push((
            r#"content: "[A-Za-z0-9+/]{40,}={0,2}""#.to_owned(),
            r#"content: "[BASE64]""#.to_owned(),
        ));
        filters.push((
            r"\d+(h \d\dm|m \d\ds|s)\b".to_owned(),
            "[DURATION]".to_owned(),
        ));
        filters.push((
            r#""(uptime_seconds|idle_seconds|lease_left_seconds)": -?\d+"#.to_owned(),
            r#""$1": [N]"#.to_owned(),
        ));
        filters
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The snapshot text of one run.
pub fn render(output: &Output) -> String {
    let text = format!(
        "success: {}\nexit_code: {}\n----- stdout -----\n{}\n----- stderr -----\n{}",
        output.status.success(),
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    // Trailing spaces (clap pads blank help lines) do not survive in source.
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `soong_snapshot!(context, ["args"], @"snapshot")`; with `table` first,
/// runs of spaces are collapsed, so column widths that follow a duration
/// (`9s` vs `10s`) cannot make the snapshot flaky.
#[macro_export]
macro_rules! soong_snapshot {
    (table $context:expr, $args:expr, @$snapshot:literal) => {{
        let output = $context.run(&$args);
        let mut filters = $context.filters();
        filters.push((r" {2,}".to_owned(), "  ".to_owned()));
        let filters: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        insta::with_settings!({filters => filters}, {
            insta::assert_snapshot!($crate::common::render(&output), @$snapshot);
        });
        output
    }};
    ($context:expr, $args:expr, @$snapshot:literal) => {{
        let output = $context.run(&$args);
        let filters = $context.filters();
        let filters: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        insta::with_settings!({filters => filters}, {
            insta::assert_snapshot!($crate::common::render(&output), @$snapshot);
        });
        output
    }};
}

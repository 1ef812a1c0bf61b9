//! systemd's notify protocol: `serve_with` calls the seam in order (ready
//! once, the watchdog from the loop, a status line, stopping), and the real
//! binary speaks `sd_notify` to a real Unix datagram socket: READY, then
//! WATCHDOG at half of `WATCHDOG_USEC`, then STATUS; the pings stop while
//! the enforcement loop is stalled (debug builds' test hook) although the
//! API still answers; STOPPING on SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use soong_daemon::systemd::Notifier;

use crate::support::{DaemonProcess, Policy, TestContext};

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

impl Notifier for Recorder {
    fn ready(&self) {
        self.events.lock().unwrap().push("READY=1".into());
    }
    fn watchdog(&self) {
        self.events.lock().unwrap().push("WATCHDOG=1".into());
    }
    fn status(&self, line: &str) {
        self.events.lock().unwrap().push(format!("STATUS={line}"));
    }
    fn stopping(&self) {
        self.events.lock().unwrap().push("STOPPING=1".into());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_loop_reports_ready_then_pings_the_watchdog_every_second() {
    let ctx = TestContext::new().await;
    let config = ctx.write_config(&ctx.config_text(Policy::default(), ""));
    let settings = soong_daemon::Settings::load(&config).unwrap();
    let recorder = Arc::new(Recorder::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(soong_daemon::serve_with(
        settings,
        listener,
        async {
            let _ = stopped.await;
        },
        recorder.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    stop.send(()).unwrap();
    daemon.await.unwrap().unwrap();

    let events = recorder.events.lock().unwrap().clone();
    assert_eq!(events.iter().filter(|e| *e == "READY=1").count(), 1);
    let pings = events.iter().filter(|e| *e == "WATCHDOG=1").count();
    assert!(
        (3..=10).contains(&pings),
        "{pings} watchdog pings in 3.5 s: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("STATUS=idle ") && e.ends_with(" (idle)")),
        "{events:?}"
    );
    assert_eq!(events.iter().filter(|e| *e == "STOPPING=1").count(), 1);
}

/// The notify socket, as systemd would bind it, read without blocking.
struct NotifySocket {
    socket: tokio::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn bind(dir: &std::path::Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        Self { socket, path }
    }

    /// Every message received during `window`, in order (one message per
    /// `KEY=value` line).
    async fn collect(&self, window: Duration) -> Vec<String> {
        let mut messages = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        let mut buf = vec![0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await {
            let text = String::from_utf8(buf[..n].to_vec()).unwrap();
            messages.extend(text.lines().map(str::to_owned));
        }
        messages
    }
}

fn position(messages: &[String], what: impl Fn(&str) -> bool) -> Option<usize> {
    messages.iter().position(|m| what(m))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_notifies_ready_then_watchdog_then_status_and_the_pings_stop_while_the_loop_is_stalled()
 {
    let ctx = TestContext::new().await;
    let config = ctx.write_config(&ctx.config_text(Policy::default(), ""));
    let notify = NotifySocket::bind(ctx.dir.path());
    let stall = ctx.dir.path().join("stall");
    // WATCHDOG_PID is left unset (systemd may omit it): the watchdog is then
    // this process's. 2 s: a ping at least every second.
    let daemon = DaemonProcess::start_with_env(
        &config,
        &ctx.dir.path().join("daemon.log"),
        &[
            ("NOTIFY_SOCKET", notify.path.as_os_str()),
            ("WATCHDOG_USEC", "2000000".as_ref()),
            ("SOONG_TEST_STALL_LOOP_FILE", stall.as_os_str()),
        ],
    );
    ctx.wait_healthy().await;

    let first = notify.collect(Duration::from_millis(3500)).await;
    let ready = position(&first, |m| m == "READY=1").unwrap_or_else(|| panic!("{first:?}"));
    assert_eq!(ready, 0, "READY=1 comes first: {first:?}");
    let watchdog = position(&first, |m| m == "WATCHDOG=1").unwrap_or_else(|| panic!("{first:?}"));
    let status =
        position(&first, |m| m.starts_with("STATUS=")).unwrap_or_else(|| panic!("{first:?}"));
    assert!(ready < watchdog && watchdog < status, "{first:?}");
    let pings = first.iter().filter(|m| *m == "WATCHDOG=1").count();
    // Every second (half of 2 s), not on every tick of the loop.
    assert!(
        (2..=5).contains(&pings),
        "{pings} pings in 3.5 s: {first:?}"
    );
    let line = first[status].strip_prefix("STATUS=").unwrap();
    assert!(
        line.starts_with("idle ")
            && line.contains("s/10m, lease 19m left, shutdown ")
            && line.ends_with(" UTC (idle)"),
        "{line}"
    );
    assert!(!first.iter().any(|m| m.contains(crate::support::TOKEN)));

    // Stall the loop: the pings stop, although the process and its API live on.
    std::fs::write(&stall, "").unwrap();
    let _ = notify.collect(Duration::from_millis(1500)).await;
    let stalled = notify.collect(Duration::from_secs(3)).await;
    assert!(
        !stalled.iter().any(|m| m == "WATCHDOG=1"),
        "pings while the loop is stalled: {stalled:?}\n{}",
        ctx.log()
    );
    assert_eq!(ctx.get("/health").await.status(), 200);

    // Unstalled, the loop pings again.
    std::fs::remove_file(&stall).unwrap();
    let resumed = notify.collect(Duration::from_secs(3)).await;
    assert!(resumed.iter().any(|m| m == "WATCHDOG=1"), "{resumed:?}");

    let exit = daemon.stop();
    assert!(exit.success(), "{exit:?}\n{}", ctx.log());
    let last = notify.collect(Duration::from_millis(500)).await;
    assert!(last.iter().any(|m| m == "STOPPING=1"), "{last:?}");
    assert!(
        ctx.log()
            .contains("enforcement loop stalled by the test hook")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_watchdog_the_binary_sends_ready_and_status_but_no_pings() {
    let ctx = TestContext::new().await;
    let config = ctx.write_config(&ctx.config_text(Policy::default(), ""));
    let notify = NotifySocket::bind(ctx.dir.path());
    let _daemon = DaemonProcess::start_with_env(
        &config,
        &ctx.dir.path().join("daemon.log"),
        &[("NOTIFY_SOCKET", notify.path.as_os_str())],
    );
    ctx.wait_healthy().await;
    let messages = notify.collect(Duration::from_millis(2500)).await;
    assert_eq!(
        messages.first().map(String::as_str),
        Some("READY=1"),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("STATUS=idle ")),
        "{messages:?}"
    );
    assert!(!messages.iter().any(|m| m == "WATCHDOG=1"), "{messages:?}");
}

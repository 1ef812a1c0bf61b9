//! The systemd seam: `serve_with` reports readiness once, pings the
//! watchdog from the enforcement loop every second, and says what it is
//! doing in the status line (the sd_notify implementation plugs in here).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use soong_daemon::systemd::Notifier;

use crate::support::{Policy, TestContext};

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
            .any(|e| e.starts_with("STATUS=running; idle_timeout in ")),
        "{events:?}"
    );
    assert_eq!(events.iter().filter(|e| *e == "STOPPING=1").count(), 1);
}

//! `soong history`: the local log written by start, extend and stop, a
//! simulated day of launches and terminations, and the worker's events.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;

use crate::common::{TestContext, render};

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn history_file(context: &TestContext) -> std::path::PathBuf {
    context.dir.path().join(".local/state/soong/history.jsonl")
}

#[test]
fn start_extend_and_stop_are_logged_and_the_unused_lease_counts_as_saved() {
    let context = TestContext::with_daemons("valid.yaml");
    let output = context
        .command(&["start", "-y", "--model", "llama-3.1-8b", "--hours", "2"])
        .env("SOONG_WAIT_SCALE", "0.05")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", render(&output));
    let output = context.run(&["extend", "1"]);
    assert!(output.status.success(), "{}", render(&output));
    let output = context
        .command(&["stop", "-y"])
        .env("SOONG_WAIT_SCALE", "0.1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", render(&output));
    let mode = std::fs::metadata(history_file(&context))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let output = context.run(&["history", "--json"]);
    assert!(output.status.success(), "{}", render(&output));
    let history: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let events = history["events"].as_array().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["launch", "extend", "terminate"], "{history}");
    let instance = &history["instances"][0];
    assert_eq!(instance["extensions"], 1);
    assert_eq!(instance["end_reason"], "user");
    // 2 h + 1 h of lease, stopped within seconds: almost 3 h saved.
    let saved = instance["saved_seconds"].as_i64().unwrap();
    assert!((3 * 3600 - 120..=3 * 3600).contains(&saved), "{history}");
    assert!(history["saved_cents"].as_f64().unwrap() > 0.0);
}

/// A log of two days: `a` 10:00–12:00 two days ago at $1/h, stopped by the
/// user with 4 h of lease left; `b` 23:00–01:00 across midnight at $2/h,
/// ended by its idle timeout; `c` launched yesterday, ended by the worker.
fn simulated_days(context: &TestContext) -> i64 {
    let midnight = now() - now().rem_euclid(DAY);
    let day = midnight - 2 * DAY;
    let lines = [
        serde_json::json!({"at": day + 10 * 3600, "event": "launch", "instance_id": "a", "instance_name": "soong-a", "price_cents_per_hour": 100, "lease_deadline": day + 14 * 3600, "instance_type": "gpu_1x_a10"}),
        serde_json::json!({"at": day + 11 * 3600, "event": "extend", "instance_id": "a", "lease_deadline": day + 16 * 3600, "granted_seconds": 7200}),
        serde_json::json!({"at": day + 12 * 3600, "event": "terminate", "instance_id": "a", "reason": "user"}),
        serde_json::json!({"at": day + 23 * 3600, "event": "launch", "instance_id": "b", "instance_name": "soong-b", "price_cents_per_hour": 200, "lease_deadline": day + 27 * 3600}),
        serde_json::json!({"at": day + 25 * 3600, "event": "terminate", "instance_id": "b", "reason": "idle_timeout"}),
        serde_json::json!({"at": day + 30 * 3600, "event": "launch", "instance_id": "c", "instance_name": "soong-c", "price_cents_per_hour": 100, "lease_deadline": day + 34 * 3600}),
    ];
    let path = history_file(context);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = String::new();
    for line in &lines {
        text.push_str(&line.to_string());
        text.push('\n');
    }
    text.push_str("{\"torn line\n");
    std::fs::write(&path, text).unwrap();
    day
}

#[test]
fn history_over_simulated_days_splits_cost_at_midnight_and_charts_it() {
    let context = TestContext::new(Some("valid.yaml"));
    let day = simulated_days(&context);
    let output = context.run(&["history", "--days", "3", "--json"]);
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("1 line(s)"),
        "the torn line is reported: {text}"
    );
    let history: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let per_day: Vec<&serde_json::Value> = history["per_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["cost_cents"])
        .collect();
    // Day 1: a ($2) + b's first hour ($2); day 2: b's second hour ($2) +
    // c, whose end was never seen: counted to its lease's end, 06:00 to
    // 10:00 ($4), not as still running.
    assert_eq!(*per_day[0], 400.0, "{history}");
    assert_eq!(*per_day[1], 600.0, "{history}");
    assert_eq!(*per_day[2], 0.0, "{history}");
    let c = &history["instances"][2];
    assert_eq!(c["end_estimated"], true, "{history}");
    assert_eq!(c["duration_seconds"], 4 * 3600, "{history}");
    let a = &history["instances"][0];
    assert_eq!(a["saved_seconds"], 4 * 3600, "{history}");
    assert_eq!(a["launched_at"], day + 10 * 3600);
    let b = &history["instances"][1];
    assert_eq!(b["end_reason"], "idle_timeout");
    assert_eq!(b["saved_seconds"], 2 * 3600);
    assert_eq!(history["saved_cents"], 800.0);

    let output = context.run(&["history", "--days", "3"]);
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("Cost per day (UTC):"), "{text}");
    assert!(text.contains("████"), "{text}");
    assert!(text.contains("soong-b"), "{text}");
    assert!(text.contains("The cost controls saved $8.00"), "{text}");
}

/// A worker that answers `GET /events` (one termination of `c`) and
/// `GET /instances` (`d`'s daemon's final heartbeat), and hands back the
/// request heads it got.
fn fake_worker(ts: &str, d_sent_at: &str) -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let events = serde_json::json!({
        "events": [{
            "id": "ev:1", "ts": ts, "type": "watchdog_terminate", "source": "watchdog",
            "instance_id": "c", "instance_name": "soong-c", "reason": "stale_heartbeat",
            "message": "no heartbeat for 16 minutes", "data": {"outcome": "terminating"}
        }],
        "cursor": null
    })
    .to_string();
    let instances = serde_json::json!({
        "instances": [{
            "instance_id": "d", "instance_name": "soong-d", "sent_at": d_sent_at,
            "state": "terminating", "shutdown_at": d_sent_at, "shutdown_reason": "idle_timeout",
            "terminate_error": null, "received_at": d_sent_at, "heartbeat_age_seconds": 60
        }]
    })
    .to_string();
    let handle = std::thread::spawn(move || {
        let mut requests = String::new();
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                request.push_str(&line);
            }
            let body = if request.starts_with("GET /instances") {
                &instances
            } else {
                &events
            };
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            requests.push_str(&request);
        }
        requests
    });
    (url, handle)
}

#[test]
fn the_workers_terminations_join_the_local_log() {
    let context = TestContext::new(Some("valid.yaml"));
    let day = simulated_days(&context);
    let rfc3339 = |at: i64| {
        time::OffsetDateTime::from_unix_timestamp(at)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // `d` ran yesterday 16:00 to 17:00 (its lease allowed until 20:00).
    let mut log = std::fs::read_to_string(history_file(&context)).unwrap();
    log.push_str(
        &serde_json::json!({"at": day + 40 * 3600, "event": "launch", "instance_id": "d", "instance_name": "soong-d", "price_cents_per_hour": 100, "lease_deadline": day + 44 * 3600})
            .to_string(),
    );
    log.push('\n');
    std::fs::write(history_file(&context), log).unwrap();
    let (url, worker) = fake_worker(&rfc3339(day + 32 * 3600), &rfc3339(day + 41 * 3600));
    let mut config = std::fs::read_to_string(&context.config).unwrap();
    config.push_str("worker:\n  url: ");
    config.push_str(&url);
    config.push_str("\n  secret: worker-secret\n  admin_token: admin-token-for-tests\n");
    std::fs::write(&context.config, config).unwrap();
    let output = context.run(&["history", "--days", "3", "--json"]);
    let text = render(&output);
    assert!(output.status.success(), "{text}");
    let request = worker.join().unwrap();
    assert!(request.starts_with("GET /events?since="), "{request}");
    assert!(request.contains("GET /instances "), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: bearer admin-token-for-tests"),
        "{request}"
    );
    let history: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let c = &history["instances"][2];
    assert_eq!(c["end_reason"], "watchdog:stale_heartbeat", "{history}");
    assert_eq!(c["duration_seconds"], 2 * 3600);
    assert_eq!(c["saved_seconds"], 2 * 3600);
    // The daemon's own termination, from its last heartbeat.
    let d = &history["instances"][3];
    assert_eq!(d["end_reason"], "idle_timeout", "{history}");
    assert_eq!(d["duration_seconds"], 3600);
    assert_eq!(d["saved_seconds"], 3 * 3600);
}

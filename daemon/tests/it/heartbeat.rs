//! The heartbeat to the watchdog worker (DESIGN.md §3.4), against a fake
//! worker: pushed every interval whatever the idle state, with the
//! per-instance bearer token, carrying state and `shutdown_at`; and a dead
//! worker never delays termination.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::{Request, Route, post};
use serde_json::Value;

use crate::support::{Policy, TestContext, arrival, wait_for};

const WORKER_TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A worker that records every heartbeat and answers 204.
async fn fake_worker() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let log = Arc::clone(&received);
    let app = Route::new().at(
        "/heartbeat",
        post(poem::endpoint::make(move |req: Request| {
            let log = Arc::clone(&log);
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body: Value = req.into_body().into_json().await.unwrap_or(Value::Null);
                log.lock().unwrap().push((auth, body));
                StatusCode::NO_CONTENT
            }
        })),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (addr, received)
}

fn worker_section(url: &str) -> String {
    format!("worker:\n  url: {url}\n  token: {WORKER_TOKEN}\n  heartbeat_interval: 1s\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_are_pushed_every_interval_idle_or_not_with_the_instance_token() {
    let ctx = TestContext::new().await;
    let (addr, received) = fake_worker().await;
    let policy = Policy {
        idle: "3s",
        ..Policy::default()
    };
    let config =
        ctx.write_config(&ctx.config_text(policy, &worker_section(&format!("http://{addr}/"))));
    let _daemon = ctx.spawn(&config).await;

    ctx.wait_terminated(Duration::from_secs(10)).await;
    // Heartbeats continue while terminating, too.
    let heartbeats = wait_for(
        "heartbeats after termination",
        Duration::from_secs(5),
        || {
            let got = received.lock().unwrap().clone();
            got.iter()
                .any(|(_, b)| b["state"] == "terminating")
                .then_some(got)
        },
    )
    .await;
    assert!(heartbeats.len() >= 3, "{heartbeats:#?}");
    for (auth, body) in &heartbeats {
        assert_eq!(
            auth.as_deref(),
            Some(format!("Bearer {WORKER_TOKEN}").as_str())
        );
        assert_eq!(body["instance_id"], ctx.instance_id.as_str());
        assert_eq!(body["instance_name"], ctx.instance_name.as_str());
        assert_eq!(body["shutdown_reason"], "idle_timeout");
        assert!(body.get("terminate_error").is_some());
        assert!(body["sent_at"].is_string() && body["shutdown_at"].is_string());
    }
    assert_eq!(heartbeats[0].1["state"], "running");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_worker_never_delays_termination() {
    let ctx = TestContext::new().await;
    // Accepts connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = black_hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = black_hole.accept().await {
            held.push(socket);
        }
    });
    let policy = Policy {
        lease: "4s",
        max_lease: "4s",
        hard: "4s",
        ..Policy::default()
    };
    let config =
        ctx.write_config(&ctx.config_text(policy, &worker_section(&format!("http://{addr}"))));
    let _daemon = ctx.spawn(&config).await;
    let call = ctx.wait_terminated(Duration::from_secs(10)).await;
    let deadline = ctx.launched_at + time::Duration::seconds(4);
    let delay = arrival(&call) - deadline;
    assert!(
        delay < time::Duration::seconds(2),
        "terminate came {delay} after the deadline"
    );
}

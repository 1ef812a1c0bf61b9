//! Every endpoint's authentication and bad-input behaviour, against an
//! in-process daemon: 401 with `WWW-Authenticate: Bearer`, 400/422 for
//! garbage, 405, 404, 413, and error bodies that never leak paths, OS
//! errors or type names. The daemon keeps enforcing throughout.

use std::time::Duration;

use serde_json::Value;
use soong_protocol::api::{ActivityResponse, HealthResponse};

use crate::support::{InProcess, Policy, TOKEN, TestContext};

const AUTHED: [(&str, &str); 5] = [
    ("GET", "/status"),
    ("GET", "/metrics"),
    ("POST", "/activity"),
    ("POST", "/extend"),
    ("POST", "/shutdown"),
];

struct Api {
    ctx: TestContext,
    daemon: InProcess,
}

impl Api {
    async fn start() -> Self {
        let ctx = TestContext::new().await;
        let config = ctx.write_config(&ctx.config_text(Policy::default(), ""));
        let daemon = InProcess::start(&config).await;
        Self { ctx, daemon }
    }

    fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.ctx.http.request(method, self.daemon.url(path))
    }

    async fn send(&self, method: &str, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .request(method, path)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// An error body has exactly `{"error": {"code", "message"}}` and gives
/// nothing away about the daemon's insides.
fn assert_clean_error(body: &Value, code: &str) {
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(error.as_object().unwrap().len(), 2, "{body}");
    assert_eq!(error["code"], code, "{body}");
    let message = error["message"].as_str().unwrap();
    for leak in [
        "/tmp",
        "/var",
        "/etc",
        "os error",
        "errno",
        "serde",
        "f64",
        "u64",
        "invalid type",
        "poem",
        "::",
        "line ",
        "column",
        "Error",
        "panick",
    ] {
        assert!(
            !message.contains(leak),
            "error message leaks `{leak}`: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_needs_no_token_and_says_only_ok() {
    let api = Api::start().await;
    let response = api.request("GET", "/health").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    let _: HealthResponse = serde_json::from_value(body).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_other_endpoint_refuses_a_missing_or_wrong_token_with_401() {
    let api = Api::start().await;
    for (method, path) in AUTHED {
        let attempts = [
            api.request(method, path),
            api.request(method, path).bearer_auth("wrong"),
            api.request(method, path).bearer_auth(format!("{TOKEN}x")),
            api.request(method, path).basic_auth(TOKEN, None::<&str>),
            api.request(method, path).header("authorization", TOKEN),
            // A token in the URL is never accepted.
            api.ctx.http.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                api.daemon
                    .url(&format!("{path}?token={TOKEN}&access_token={TOKEN}")),
            ),
        ];
        for attempt in attempts {
            let response = attempt.body(r#"{"hours": 1}"#).send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path}");
            assert_eq!(
                response.headers().get("www-authenticate").unwrap(),
                "Bearer",
                "{method} {path}"
            );
            let body: Value = response.json().await.unwrap();
            assert_clean_error(&body, "unauthorized");
        }
    }
    // Nothing an unauthenticated client sent had an effect.
    let status = api.send("GET", "/status", "").await.1;
    assert_eq!(status["state"], "running");
    assert_eq!(status["extensions"], serde_json::json!([]));
    assert!(api.ctx.terminate_calls().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
    let api = Api::start().await;
    let ok = api
        .request("GET", "/status")
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let wrong = api
        .request("GET", "/status")
        .header("authorization", format!("Bearer {}", TOKEN.to_uppercase()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_extend_bodies_get_400_or_422_and_change_nothing() {
    let api = Api::start().await;
    let cases: [(&str, u16); 14] = [
        ("", 400),
        ("not json", 400),
        ("{\"hours\": NaN}", 400),
        ("{\"hours\": 2", 400),
        ("{\"hours\": \"2\"}", 422),
        ("{\"hours\": null}", 422),
        ("{\"hours\": -1}", 422),
        ("{\"hours\": 0}", 422),
        ("{\"hours\": 1e300}", 422),
        ("{\"hours\": 0.0000001}", 422),
        ("{}", 422),
        ("[]", 422),
        ("{\"hours\": 1, \"extra\": true}", 422),
        ("{\"hour\": 1}", 422),
    ];
    for (body, expected) in cases {
        let (status, response) = api.send("POST", "/extend", body).await;
        assert_eq!(status, expected, "body {body:?} -> {response}");
        assert_clean_error(
            &response,
            if expected == 400 {
                "invalid_json"
            } else {
                "invalid_request"
            },
        );
    }
    let (_, status) = api.send("GET", "/status", "").await;
    assert_eq!(status["extensions"], serde_json::json!([]));
    assert_eq!(status["state"], "running");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_16_kib_get_413_even_without_a_length() {
    let api = Api::start().await;
    let big = format!("{{\"reason\": \"{}\"}}", "x".repeat(17 * 1024));
    for path in ["/extend", "/activity", "/shutdown"] {
        let (status, body) = api.send("POST", path, big.clone()).await;
        assert_eq!(status, 413, "{path}");
        assert_clean_error(&body, "payload_too_large");
        // Chunked, so no Content-Length announces it.
        let (status, body) = raw_chunked(api.daemon.addr, path, 20).await;
        assert_eq!(status, 413, "{path} chunked: {body}");
        assert!(body.contains("payload_too_large"), "{body}");
    }
    assert_eq!(api.send("GET", "/status", "").await.1["state"], "running");
}

/// A chunked POST of `chunks` KiB over a raw socket; the status and body
/// of the answer. Writes may fail once the daemon has answered and closed.
async fn raw_chunked(addr: std::net::SocketAddr, path: &str, chunks: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes()).await;
    for _ in 0..chunks {
        let mut chunk = b"400\r\n".to_vec();
        chunk.extend_from_slice(&[b' '; 1024]);
        chunk.extend_from_slice(b"\r\n");
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_methods_get_405_and_unknown_paths_404_as_json() {
    let api = Api::start().await;
    for (method, path) in [
        ("GET", "/extend"),
        ("GET", "/shutdown"),
        ("GET", "/activity"),
        ("POST", "/status"),
        ("POST", "/health"),
        ("DELETE", "/status"),
        ("PUT", "/metrics"),
        ("POST", "/"),
        ("DELETE", "/dashboard.js"),
    ] {
        let (status, body) = api.send(method, path, "").await;
        assert_eq!(status, 405, "{method} {path}: {body}");
        assert_clean_error(&body, "method_not_allowed");
    }
    for path in [
        "/index.html",
        "/nope",
        "/status/x",
        "/../etc/passwd",
        "/%00",
    ] {
        let (status, body) = api.send("GET", path, "").await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_clean_error(&body, "not_found");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn activity_restarts_the_idle_clock_and_shows_in_status() {
    let api = Api::start().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = api.send("POST", "/activity", "").await;
    assert_eq!(status, 200, "{body}");
    let response: ActivityResponse = serde_json::from_value(body).unwrap();
    let (_, status) = api.send("GET", "/status", "").await;
    assert_eq!(status["last_activity_source"], "api");
    assert_eq!(status["idle_seconds"], 0);
    let last: time::OffsetDateTime = time::OffsetDateTime::parse(
        status["last_activity"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(last, response.last_activity);
    assert!(last > api.ctx.launched_at);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_accepts_an_optional_reason_and_refuses_bad_ones() {
    let api = Api::start().await;
    let (status, body) = api.send("POST", "/shutdown", "{\"reason\": 5}").await;
    assert_eq!(status, 422);
    assert_clean_error(&body, "invalid_request");
    let (status, body) = api
        .send(
            "POST",
            "/shutdown",
            format!("{{\"reason\": \"{}\"}}", "r".repeat(600)),
        )
        .await;
    assert_eq!(status, 422);
    assert_clean_error(&body, "invalid_request");
    let (status, body) = api.send("POST", "/shutdown", "{oops").await;
    assert_eq!(status, 400);
    assert_clean_error(&body, "invalid_json");
    assert_eq!(api.send("GET", "/status", "").await.1["state"], "running");

    let (status, body) = api
        .send("POST", "/shutdown", "{\"reason\": \"done for today\"}")
        .await;
    assert_eq!(status, 202);
    assert_eq!(body, serde_json::json!({"state": "terminating"}));
    let (_, status) = api.send("GET", "/status", "").await;
    assert_eq!(status["state"], "terminating");
    assert_eq!(status["terminate_reason"], "shutdown_requested");
    assert_eq!(status["terminate_detail"], "done for today");
    assert_eq!(status["shutdown_reason"], "shutdown_requested");

    // Once terminating, nothing can be extended or kept alive.
    let (status, body) = api.send("POST", "/extend", "{\"hours\": 1}").await;
    assert_eq!(status, 409);
    assert_clean_error(&body, "terminating");
    let (status, body) = api.send("POST", "/activity", "").await;
    assert_eq!(status, 409);
    assert_clean_error(&body, "terminating");
    // Asking again is harmless.
    assert_eq!(api.send("POST", "/shutdown", "").await.0, 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_has_every_documented_field() {
    let api = Api::start().await;
    let (status, body) = api.send("GET", "/status", "").await;
    assert_eq!(status, 200);
    for field in [
        "instance_id",
        "instance_name",
        "state",
        "terminate_reason",
        "launched_at",
        "uptime_seconds",
        "shutdown_at",
        "shutdown_reason",
        "lease_deadline",
        "max_lease_deadline",
        "hard_deadline",
        "idle_timeout_seconds",
        "idle_seconds",
        "last_activity",
        "last_activity_source",
        "active_connections",
        "extensions",
        "price_cents_per_hour",
    ] {
        assert!(body.get(field).is_some(), "missing `{field}` in {body}");
    }
    assert_eq!(body["instance_id"], api.ctx.instance_id.as_str());
    assert_eq!(body["shutdown_reason"], "idle_timeout");
    assert_eq!(body["idle_timeout_seconds"], 600);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_prometheus_text_behind_the_token() {
    let api = Api::start().await;
    let response = api
        .request("GET", "/metrics")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
    );
    let text = response.text().await.unwrap();
    for line in [
        "soong_seconds_to_deadline{deadline=\"lease\"}",
        "soong_seconds_to_deadline{deadline=\"hard\"}",
        "soong_seconds_to_deadline{deadline=\"idle\"}",
        "soong_idle_seconds ",
        "soong_active_connections 0",
        "soong_terminate_attempts_total 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_garbage_does_not_delay_enforcement() {
    let ctx = TestContext::new().await;
    let policy = Policy {
        lease: "4s",
        max_lease: "4s",
        hard: "4s",
        ..Policy::default()
    };
    let config = ctx.write_config(&ctx.config_text(policy, ""));
    let daemon = InProcess::start(&config).await;
    let flood = {
        let http = ctx.http.clone();
        let url = daemon.url("/extend");
        tokio::spawn(async move {
            let bodies = ["{", "{\"hours\": -1}", "[]", "null", &"x".repeat(20_000)];
            let start = std::time::Instant::now();
            let mut sent = 0u32;
            // Bounded in time and count; loopback only.
            while start.elapsed() < Duration::from_secs(6) && sent < 20_000 {
                let body = bodies[sent as usize % bodies.len()].to_owned();
                let _ = http.post(&url).bearer_auth(TOKEN).body(body).send().await;
                let _ = http.post(&url).body("{\"hours\": 1}").send().await;
                sent += 2;
            }
            sent
        })
    };
    let call = ctx.wait_terminated(Duration::from_secs(10)).await;
    let delay = crate::support::arrival(&call) - (ctx.launched_at + time::Duration::seconds(4));
    assert!(
        delay < time::Duration::seconds(2),
        "terminate {delay} after the deadline"
    );
    assert!(flood.await.unwrap() > 100);
    assert_eq!(ctx.effective_terminates().len(), 1);
}

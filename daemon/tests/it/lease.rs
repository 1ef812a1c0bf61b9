//! The lease and the hard timeout against the simulator: expiry terminates
//! the right instance exactly once within 2 s, extensions are capped, and
//! neither a restart nor `kill -9` grants a fresh lease.

use std::time::Duration;

use soong_protocol::ShutdownReason;
use soong_protocol::api::{DaemonState, ErrorBody, ExtendResponse};

use crate::support::{InProcess, Policy, TestContext, arrival};

#[tokio::test(flavor = "multi_thread")]
async fn lease_expiry_terminates_the_right_instance_exactly_once_within_two_seconds() {
    let ctx = TestContext::new().await;
    let policy = Policy {
        lease: "4s",
        max_lease: "6s",
        hard: "8s",
        ..Policy::default()
    };
    let config = ctx.write_config(&ctx.config_text(policy, ""));
    let _daemon = ctx.spawn(&config).await;
    let status = ctx.status().await;
    assert_eq!(status.shutdown_reason, ShutdownReason::LeaseExpired);

    let call = ctx.wait_terminated(Duration::from_secs(10)).await;
    let delay = arrival(&call) - status.lease_deadline;
    assert!(
        delay >= time::Duration::ZERO && delay < time::Duration::seconds(2),
        "terminate arrived {delay} after the lease deadline"
    );

    // No second call follows, and the daemon says why it terminated.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ctx.terminate_calls().len(), 1, "exactly one terminate call");
    let status = ctx.status().await;
    assert_eq!(status.state, DaemonState::Terminating);
    assert_eq!(status.terminate_reason, Some(ShutdownReason::LeaseExpired));
    assert!(status.terminate_confirmed);
    assert_eq!(status.terminate_error, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn extensions_are_granted_up_to_max_lease_then_refused_with_409() {
    let ctx = TestContext::new().await;
    let policy = Policy {
        lease: "1h",
        max_lease: "3h",
        hard: "4h",
        ..Policy::default()
    };
    let config = ctx.write_config(&ctx.config_text(policy, ""));
    let daemon = InProcess::start(&config).await;
    let post = |hours: &'static str| {
        let http = ctx.http.clone();
        let url = daemon.url("/extend");
        async move {
            http.post(url)
                .bearer_auth(crate::support::TOKEN)
                .body(format!(r#"{{"hours": {hours}}}"#))
                .send()
                .await
                .unwrap()
        }
    };
    let launched = ctx.launched_at;

    let response = post("1").await;
    assert_eq!(response.status(), 200);
    let grant: ExtendResponse = response.json().await.unwrap();
    assert_eq!(grant.granted_seconds, 3600);
    assert_eq!(grant.requested_seconds, 3600);
    assert!(!grant.capped);
    assert_eq!(grant.lease_deadline, launched + time::Duration::hours(2));

    // Past the cap: the remainder is granted, and it says so.
    let grant: ExtendResponse = post("5").await.json().await.unwrap();
    assert_eq!(grant.granted_seconds, 3600);
    assert_eq!(grant.requested_seconds, 5 * 3600);
    assert!(grant.capped);
    assert_eq!(grant.lease_deadline, launched + time::Duration::hours(3));

    // At the cap: refused, with the reason.
    let response = post("0.5").await;
    assert_eq!(response.status(), 409);
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error.code, "lease_at_maximum");
    assert!(
        body.error.message.contains("max_lease"),
        "{}",
        body.error.message
    );

    let status: soong_protocol::api::StatusResponse = ctx
        .http
        .get(daemon.url("/status"))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status.extensions.len(), 2);
    assert_eq!(status.lease_deadline, launched + time::Duration::hours(3));
    assert_eq!(
        status.max_lease_deadline,
        launched + time::Duration::hours(3)
    );
    assert_eq!(status.hard_deadline, launched + time::Duration::hours(4));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_and_kill_9_mid_lease_keep_the_deadlines_extensions_and_idle_clock() {
    let ctx = TestContext::new().await;
    let policy = Policy {
        lease: "1h",
        max_lease: "3h",
        hard: "4h",
        ..Policy::default()
    };
    let config = ctx.write_config(&ctx.config_text(policy, ""));
    let daemon = ctx.spawn(&config).await;
    assert_eq!(ctx.post("/extend", r#"{"hours": 1.5}"#).await.status(), 200);
    assert_eq!(ctx.post("/activity", "").await.status(), 200);
    let before = ctx.status().await;

    daemon.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let daemon = ctx.spawn(&config).await;
    let after = ctx.status().await;
    assert_eq!(after.lease_deadline, before.lease_deadline);
    assert_eq!(after.hard_deadline, before.hard_deadline);
    assert_eq!(after.extensions, before.extensions);
    assert_eq!(
        after.last_activity, before.last_activity,
        "kill -9 must not reset the idle clock"
    );
    assert_eq!(after.last_activity_source.as_deref(), Some("api"));

    // A clean stop (SIGTERM) keeps them too.
    assert!(daemon.stop().success());
    let _daemon = ctx.spawn(&config).await;
    let again = ctx.status().await;
    assert_eq!(again.lease_deadline, before.lease_deadline);
    assert_eq!(again.last_activity, before.last_activity);
    assert!(ctx.terminate_calls().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_state_file_falls_back_to_launch_time_not_to_now() {
    let ctx = TestContext::new().await;
    let policy = Policy {
        idle: "5s",
        lease: "1h",
        max_lease: "3h",
        hard: "4h",
    };
    let config = ctx.write_config(&ctx.config_text(policy, ""));
    let daemon = ctx.spawn(&config).await;
    assert_eq!(ctx.post("/extend", r#"{"hours": 1}"#).await.status(), 200);
    daemon.kill9();
    std::fs::write(ctx.state_dir().join("state.json"), "{ corrupt").unwrap();
    let _daemon = ctx.spawn(&config).await;
    let status = ctx.status().await;
    assert!(status.extensions.is_empty());
    assert_eq!(status.launched_at, ctx.launched_at);
    assert_eq!(status.last_activity, ctx.launched_at, "never now");
    // The unusable file is kept aside for inspection.
    let kept = std::fs::read_dir(ctx.state_dir())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        });
    assert!(kept);
    // The idle clock counted from launch, so it fires soon.
    ctx.wait_terminated(Duration::from_secs(10)).await;
    assert_eq!(
        ctx.status().await.terminate_reason,
        Some(ShutdownReason::IdleTimeout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hard_timeout_holds_even_when_the_lease_is_extended() {
    let ctx = TestContext::new().await;
    let policy = Policy {
        lease: "2s",
        max_lease: "4s",
        hard: "4s",
        ..Policy::default()
    };
    let config = ctx.write_config(&ctx.config_text(policy, ""));
    let daemon = InProcess::start(&config).await;
    let response = ctx
        .http
        .post(daemon.url("/extend"))
        .bearer_auth(crate::support::TOKEN)
        .body(r#"{"hours": 8}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let call = ctx.wait_terminated(Duration::from_secs(10)).await;
    let hard = ctx.launched_at + time::Duration::seconds(4);
    let delay = arrival(&call) - hard;
    assert!(
        delay >= time::Duration::ZERO && delay < time::Duration::seconds(2),
        "{delay}"
    );
    daemon.stop().await;
}
